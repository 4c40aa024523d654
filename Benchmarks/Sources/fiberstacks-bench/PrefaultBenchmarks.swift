@_spi(Benchmarks) import GuardPages
import CPeers
import StackAllocators

/// `prefault`: ns per page and GB/s (`extra.gbps`) per strategy and page size.
///
/// - `touch_4k`, `populate_4k` (`mapping_bytes` 1M): `Prefault.apply` on a fresh 1 MiB stack, one stack
///   at a time, allocation and release not timed: what the peer harness measures with raw syscalls.
/// - `alloc_populate_4k`, `alloc_hugetlb_2m`, `alloc_hugetlbfs_2m`, `alloc_thp_2m` (`mapping_bytes` 32M):
///   `allocate` of a populated 32 MiB stack (reserve, guard, prefault: the prefault is all but a few
///   microseconds), per page of the stack's page size. `extra.huge_percent`: the share in huge pages
///   (/proc/self/smaps), which THP does not promise.
enum PrefaultBenchmarks {
    static func run(_ recorder: BenchRecorder) throws {
        try prefaultOnly(recorder)
        try allocatePopulated(recorder)
    }

    /// Our `Prefault.apply` per strategy, alternating with C doing the same on fresh mappings.
    static func prefaultOnly(_ recorder: BenchRecorder) throws {
        let allocator = try MmapStackAllocator(logger: benchLogger)
        let stacksPerRep = recorder.scale.ops(32, quick: 2)
        let stackSize = 1 << 20
        let pages = stacksPerRep * stackSize / systemPageSize
        let params = ["mapping_bytes": stackSize, "page": systemPageSize]
        let ours = [PrefaultStrategy.touch, .populate].map { strategy in
            Contender.ours("\(strategy)_4k", params) {
                var elapsed: UInt64 = 0
                for _ in 0..<stacksPerRep {
                    let stack = try allocator.allocate(StackRequest(usableSize: stackSize))
                    let start = nanoseconds()
                    try Prefault.apply(PrefaultPolicy(strategy), to: stack.descriptor.layout, logger: benchLogger)
                    elapsed += nanoseconds() - start
                }
                return Double(elapsed) / Double(pages)
            }
        }
        let peers = [("touch_4k", Int32(0)), ("madv_populate_write_4k", 1)].map { name, populate in
            Contender.peer(name, params, unmatched: ["guard_size: 0 vs \(StackRequest.defaultGuardSize)"]) {
                try peerNanoseconds(name) { fs_peer_prefault(populate, stackSize, stacksPerRep) } / Double(pages)
            }
        }
        try recorder.contest(.prefault, opsPerRep: pages, ours + peers)
    }

    static func allocatePopulated(_ recorder: BenchRecorder) throws {
        let bytes = recorder.scale.ops(32 << 20, quick: 2 << 20)
        let small = try MmapStackAllocator(logger: benchLogger)
        let huge = HugePageStackAllocator(logger: benchLogger)
        let populate = PrefaultPolicy(.populate)
        func hugeRequest(_ backing: HugePageRequest.Backing) -> StackRequest {
            StackRequest(usableSize: bytes, pages: .huge(HugePageRequest(backing)), prefault: populate)
        }
        let cases: [(String, any StackAllocator, StackRequest)] = [
            ("alloc_populate_4k", small, StackRequest(usableSize: bytes, prefault: populate)),
            ("alloc_hugetlb_2m", huge, hugeRequest(.anonymous)),
            ("alloc_hugetlbfs_2m", huge, hugeRequest(.hugetlbfs())),
            ("alloc_thp_2m", huge, hugeRequest(.transparent)),
        ]
        try recorder.figure(.prefault, "alloc_hugetlb_2m_vs_c") {
            try hugeTLBAgainstC(recorder, bytes: bytes, request: hugeRequest(.anonymous), allocator: huge)
        }
        for (name, allocator, request) in cases {
            try recorder.figure(.prefault, name) {
                var pageSize = systemPageSize
                var hugeBytes = 0
                let samples = try measure(recorder.scale, ops: 1) {
                    let start = nanoseconds()
                    let stack = try allocator.allocate(request)
                    let elapsed = nanoseconds() - start
                    pageSize = stack.descriptor.layout.sizes.pageSize
                    hugeBytes = try HugePageStackAllocator.hugePageBytes(of: stack)
                    return elapsed
                }.map { $0 / Double(bytes / pageSize) }
                let result = BenchResult(
                    section: .prefault, name: name, params: ["mapping_bytes": bytes, "page": pageSize],
                    samples: samples, opsPerRep: bytes / pageSize)
                recorder.add(result.withExtra([
                    "gbps": Double(pageSize) / result.median, "huge_percent": Double(hugeBytes * 100 / bytes),
                ]))
            }
        }
    }

    /// A populated 2 MiB hugetlb stack allocated by us (`alloc_hugetlb_2m_contest`: allocate, not release,
    /// timed) alternating with C's mmap(MAP_HUGETLB) + MADV_POPULATE_WRITE of the same bytes; per 2 MiB page.
    static func hugeTLBAgainstC(
        _ recorder: BenchRecorder, bytes: Int, request: StackRequest, allocator: HugePageStackAllocator
    ) throws {
        let pageSize = try allocator.allocate(request).descriptor.layout.sizes.pageSize
        let pages = bytes / pageSize
        let params = ["mapping_bytes": bytes, "page": pageSize]
        try recorder.contest(.prefault, opsPerRep: pages, [
            .ours("alloc_hugetlb_2m_contest", params) {
                let start = nanoseconds()
                let stack = try allocator.allocate(request)
                let elapsed = nanoseconds() - start
                return withExtendedLifetime(stack) { Double(elapsed) / Double(pages) }
            },
            .peer("mmap_hugetlb_populate", params, unmatched: ["guard_size: 0 vs \(request.guardSize)"]) {
                try peerNanoseconds("mmap_hugetlb_populate") { fs_peer_hugetlb_populate(bytes) } / Double(pages)
            },
        ])
    }
}
