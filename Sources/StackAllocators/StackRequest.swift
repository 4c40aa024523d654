/// What a caller asks of an allocator.
public struct StackRequest: Sendable, Hashable {
    /// Default usable size: 512 KiB.
    public static let defaultUsableSize = 512 << 10
    /// Default guard: 64 KiB. Swift emits no stack probes, so one frame can skip a smaller guard
    /// (a 32 KiB frame is a single `sub rsp`); see docs/sizing-stacks.md.
    public static let defaultGuardSize = 64 << 10

    /// Usable bytes; rounded up to the page size.
    public var usableSize: Int
    /// Guard bytes below the usable range; rounded up to the system page size; 0 for no guard.
    public var guardSize: Int
    /// What backs the usable range.
    public var pages: PageKind
    /// What to make resident before the stack is returned.
    public var prefault: PrefaultPolicy
    /// The NUMA node(s) the pages must live on, bound before any page is touched; nil leaves
    /// the process's policy (first touch: the node of the CPU that faults a page in). See docs/numa.md.
    public var placement: NUMAPlacement?

    /// A request; every field has the documented default.
    public init(
        usableSize: Int = StackRequest.defaultUsableSize,
        guardSize: Int = StackRequest.defaultGuardSize,
        pages: PageKind = .small,
        prefault: PrefaultPolicy = .none,
        placement: NUMAPlacement? = nil
    ) {
        self.usableSize = usableSize
        self.guardSize = guardSize
        self.pages = pages
        self.prefault = prefault
        self.placement = placement
    }
}

/// What backs a stack's usable range.
public enum PageKind: Sendable, Hashable {
    /// The system's base pages (4 KiB on x86_64).
    case small
    /// Huge pages (hugetlbfs, anonymous hugetlb or transparent), served by `HugePageStackAllocator`.
    case huge(HugePageRequest)
}
