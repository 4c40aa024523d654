@_spi(Benchmarks) import GuardPages
import Logging
@_spi(Benchmarks) import StackAllocators
import Synchronization
import Testing

/// What this machine offers for huge-page tests, read once, with the skip reasons naming what is missing.
enum HugePages {
    /// The kernel's default huge page size (0 without hugetlb).
    static let size = HugePageSystem.defaultHugePageSize()
    /// Pages of the default size free and unpromised now.
    static var free: Int { HugePageSystem.hugePagePool(pageSize: size)?.available ?? 0 }
    /// At least `count` default-size pages are free.
    static func haveFree(_ count: Int = 4) -> Bool { size > 0 && free >= count }
    /// The hugetlbfs mounts of the default size this user can write (libhugetlbfs ignores the others).
    static let mounts = HugePageSystem.hugeTLBMounts().filter { $0.pageSize == size && $0.writable }.map(\.path)
    /// The THP mode is `madvise` or `always`.
    static let transparentEnabled = ["madvise", "always"].contains(HugePageSystem.transparentHugePageMode() ?? "never")
        && HugePageSystem.transparentHugePagesDisabledInProcess() == nil
    /// The 1 GiB size exists and its pool is empty (the machine this was written on: a cheap exhaustion).
    static let oneGiBPoolEmpty = HugePageSystem.hugePagePool(pageSize: 1 << 30).map { $0.available == 0 } ?? false

    static let needFree: Comment = "needs free 2 MiB huge pages: /proc/sys/vm/nr_hugepages"
    static let needMount: Comment =
        "needs a hugetlbfs mount this user can write (mount -t hugetlbfs -o mode=1777 none /dev/hugepages) and free huge pages"
    static let needTransparent: Comment =
        "needs THP mode madvise or always (/sys/kernel/mm/transparent_hugepage/enabled), not turned off for this process (PR_SET_THP_DISABLE)"
    static let needEmptyOneGiB: Comment = "needs the 1 GiB huge page size with an empty pool: /sys/kernel/mm/hugepages/hugepages-1048576kB"

    /// Bytes of hugetlb pages this process maps (`HugetlbPages` in /proc/self/status).
    static func heldByThisProcess() throws(StackError) -> Int {
        let status = try SystemFile.read("/proc/self/status")
        let line = status.split(separator: "\n").first { $0.hasPrefix("HugetlbPages:") }
        guard let kib = line?.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap({ Int($0) }) else {
            throw .systemFileUnreadable(path: "/proc/self/status (HugetlbPages)", .invalidArgument)
        }
        return kib << 10
    }

    /// The backings this machine can serve now (for tests that cover all of them).
    static var availableBackings: [HugePageRequest.Backing] {
        (haveFree() ? [.anonymous] : []) + (haveFree() && !mounts.isEmpty ? [.hugetlbfs()] : [])
            + (transparentEnabled ? [.transparent] : [])
    }

    /// A stack request for `backing`.
    static func request(
        _ backing: HugePageRequest.Backing, usable: Int = 2 << 20, pageSize: Int? = nil,
        exhaustion: HugePageRequest.ExhaustionPolicy = .strict, packing: HugePageRequest.Packing = .oneStackPerRegion,
        prefault: PrefaultPolicy = .none
    ) -> StackRequest {
        StackRequest(
            usableSize: usable,
            pages: .huge(HugePageRequest(backing, pageSize: pageSize, exhaustion: exhaustion, packing: packing)),
            prefault: prefault)
    }
}

