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

    static func prefaultOnly(_ recorder: BenchRecorder) throws {
        let allocator = try MmapStackAllocator(logger: benchLogger)
        let stacksPerRep = recorder.scale.ops(32, quick: 2)
        let stackSize = 1 << 20
        let pages = stacksPerRep * stackSize / systemPageSize
        for strategy in [PrefaultStrategy.touch, .populate] {
            let samples = try measure(recorder.scale, ops: pages) {
                var elapsed: UInt64 = 0
                for _ in 0..<stacksPerRep {
                    let stack = try allocator.allocate(StackRequest(usableSize: stackSize))
                    let start = nanoseconds()
                    try Prefault.apply(PrefaultPolicy(strategy), to: stack.descriptor.layout, logger: benchLogger)
                    elapsed += nanoseconds() - start
                }
                return elapsed
            }
            let result = BenchResult(
                section: .prefault, name: "\(strategy)_4k", params: ["mapping_bytes": stackSize, "page": systemPageSize],
                samples: samples, opsPerRep: pages)
            recorder.add(result.withExtra(["gbps": Double(systemPageSize) / result.median]))
        }
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
        for (name, allocator, request) in cases {
            try recorder.figure(.prefault, name) {
                var pageSize = systemPageSize
                var hugeBytes = 0
                let samples = try measure(recorder.scale, ops: 1) {
                    let start = nanoseconds()
                    let stack = try allocator.allocate(request)
                    let elapsed = nanoseconds() - start
                    pageSize = stack.pageSize
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
}
