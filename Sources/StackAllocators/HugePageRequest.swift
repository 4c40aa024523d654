/// How a stack asks for huge pages (`StackRequest(pages: .huge(...))`), served by `HugePageStackAllocator`.
///
/// ```swift
/// let request = StackRequest(usableSize: 2 << 20, pages: .huge(HugePageRequest(.hugetlbfs())))
/// ```
///
/// Sizes: the usable size is rounded *up* to a multiple of the huge page size (a 64 KiB request becomes
/// one 2 MiB page); ask for `.packed` to put several small stacks in one huge page instead. The guard
/// stays in system pages below the huge-page range. See docs/huge-pages.md.
public struct HugePageRequest: Sendable, Hashable, Codable {
    /// What provides the huge pages.
    public enum Backing: Sendable, Hashable, Codable {
        /// An unlinked file on a hugetlbfs mount, mapped private. `mount` nil: the mount libhugetlbfs
        /// finds for the page size (`hugetlbfs_find_path_for_size`, `hugetlbfs_unlinked_fd_for_size`);
        /// a path: a file there, which must be on a hugetlbfs (`StackError.notHugeTLBFSMount` otherwise).
        case hugetlbfs(mount: String? = nil)
        /// `MAP_HUGETLB` with the page size in the flags, from the kernel's pool (no mount needed).
        case anonymous
        /// Transparent huge pages: a PMD-aligned private mapping with `madvise(MADV_HUGEPAGE)` and
        /// never `MAP_STACK` (which means "no THP" since Linux 6.7). Best effort: the kernel may back
        /// part of it with small pages; measure with `HugePageStackAllocator.hugePageBytes(of:)`.
        case transparent
    }

    /// What happens when huge pages cannot be had (the pool is exhausted, a hugetlbfs mount's `size=` or
    /// a hugetlb cgroup limit is reached, no hugetlbfs is mounted for the size, or transparent huge pages
    /// are off).
    public enum ExhaustionPolicy: String, Sendable, Hashable, CaseIterable, Codable {
        /// Throw: a `.resourceExhausted` error names the pages needed, what is free and the file to raise
        /// (the pool's, the mount, or the cgroup's limit); `.unsupported` names the mount or the THP switch.
        case strict
        /// Return a small-page stack with a hardware guard instead, count it in
        /// `StackAllocatorStats.fallbacks`, and log a warning (the first time, per allocator).
        case fallback
    }

    /// How stacks share huge pages.
    public enum Packing: String, Sendable, Hashable, CaseIterable, Codable {
        /// One stack per huge-page region with a hardware (PROT_NONE, small-page) guard directly below it.
        case oneStackPerRegion
        /// Several stacks carved from one huge page. Nothing can trap between them (hugetlb protects
        /// only whole huge pages), so each has a `Canary` at its usable bottom instead: its
        /// `guardMechanism` is `.canary`, checked on release and by `Stack.checkCanary()`.
        /// The region as a whole keeps a hardware guard below its lowest stack.
        case packed
    }

    /// What provides the huge pages.
    public var backing: Backing
    /// The huge page size in bytes; nil for the kernel's default (`Hugepagesize` in /proc/meminfo), or
    /// for `.transparent` the PMD size, or for a named hugetlbfs mount that mount's size.
    public var pageSize: Int?
    /// What to do when huge pages cannot be had.
    public var exhaustion: ExhaustionPolicy
    /// One stack per region (hardware guard) or packed stacks (canary).
    public var packing: Packing

    /// A huge-page request; defaults: anonymous hugetlb, default size, strict, one stack per region.
    public init(
        _ backing: Backing = .anonymous, pageSize: Int? = nil, exhaustion: ExhaustionPolicy = .strict,
        packing: Packing = .oneStackPerRegion
    ) {
        self.backing = backing
        self.pageSize = pageSize
        self.exhaustion = exhaustion
        self.packing = packing
    }
}
