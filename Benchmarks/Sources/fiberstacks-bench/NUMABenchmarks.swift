@_spi(Benchmarks) import StackAllocators

/// `numa`: what NUMA placement costs on this host, 256 KiB stacks with the default guard on the first
/// node with memory. Host numbers only: in scripts/numa-vm the nodes are emulated.
///
/// - `alloc_populate`, `alloc_bind_populate`: `allocate` with `PrefaultPolicy(.populate)`, then `release`,
///   without and with `placement: .bind(node)`, alternating within each repetition (so outside load hits
///   both alike); `extra.overhead_ns` and `extra.ratio` compare the medians.
/// - `mbind_untouched`: `NUMABinding.apply(.bind(node), untouched: true)` on a fresh stack, as allocators
///   call it (no `MPOL_MF_*` flag); `mbind_move`: with the default `.move` (`MPOL_MF_MOVE`: the kernel
///   drains every CPU's LRU cache first). Allocation is not timed.
/// - `placement_query`: `PlacementReport` (move_pages with nodes NULL) per page, over one populated
///   256 KiB stack (64 pages a query) and over a populated 64 MiB range (16,384 pages a query, which
///   move_pages takes 1,024 at a time), the same number of pages per repetition.
enum NUMABenchmarks {
    static let stackSize = 256 << 10

    static func run(_ recorder: BenchRecorder) throws {
        guard NUMATopology.available else {
            recorder.skip(.numa, "*", because: "libnuma reports no NUMA support (numa_available() < 0): the kernel needs CONFIG_NUMA=y, and seccomp must allow get_mempolicy")
            return
        }
        let scale = recorder.scale
        let node = try NUMATopology.current().memoryNodes.first ?? 0
        let allocator = try MmapStackAllocator(logger: benchLogger)
        let ops = scale.ops(1_000, quick: 10)
        let params = ["size": stackSize, "node": node]
        let populate = PrefaultPolicy(.populate)
        let requests = [
            StackRequest(usableSize: stackSize, prefault: populate),
            StackRequest(usableSize: stackSize, prefault: populate, placement: .bind(node)),
        ]
        let columns = try measureFigures(scale) {
            try requests.map { request in
                Double(try timeLoop(ops) { try allocator.allocate(request).release() }) / Double(ops)
            }
        }
        let (unbound, bound) = (BenchResult.median(columns[0]), BenchResult.median(columns[1]))
        recorder.add(
            BenchResult(section: .numa, name: "alloc_populate", params: params, samples: columns[0], opsPerRep: ops),
            BenchResult(
                section: .numa, name: "alloc_bind_populate", params: params, samples: columns[1], opsPerRep: ops,
                extra: ["overhead_ns": bound - unbound, "ratio": bound / unbound]))
        for untouched in [true, false] {
            recorder.add(try bindAlone(scale, node: node, untouched: untouched, allocator: allocator))
        }
        recorder.add(try placementQuery(scale, allocator: allocator))
    }

    /// `NUMABinding.apply` alone on fresh stacks (allocation and release not timed).
    static func bindAlone(_ scale: BenchScale, node: Int, untouched: Bool, allocator: MmapStackAllocator) throws
        -> BenchResult
    {
        let count = scale.ops(256, quick: 4)
        let samples = try measure(scale, ops: count) {
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
            var live = 0
            defer {
                storage.deinitialize(count: live)
                storage.deallocate()
            }
            while live < count {
                (storage + live).initialize(to: try allocator.allocate(StackRequest(usableSize: stackSize)))
                live += 1
            }
            let start = nanoseconds()
            for index in 0..<count {
                let layout = storage[index].descriptor.layout
                try NUMABinding.apply(.bind(node), to: layout.base..<layout.top, untouched: untouched)
            }
            return nanoseconds() - start
        }
        return BenchResult(
            section: .numa, name: untouched ? "mbind_untouched" : "mbind_move",
            params: ["size": stackSize, "node": node], samples: samples, opsPerRep: count)
    }

    /// `PlacementReport` per page: over one 256 KiB stack and over a 64 MiB populated range.
    static func placementQuery(_ scale: BenchScale, allocator: MmapStackAllocator) throws -> [BenchResult] {
        let large = scale.ops(64 << 20, quick: 1 << 20)
        return try [stackSize, large].map { size in
            let stack = try allocator.allocate(
                StackRequest(usableSize: size, guardSize: 0, prefault: PrefaultPolicy(.populate)))
            let pages = size / systemPageSize
            let calls = max(1, large / size)
            let samples = try measure(scale, ops: pages * calls) {
                try timeLoop(calls) { _ = try stack.placementReport() }
            }
            return BenchResult(
                section: .numa, name: "placement_query", params: ["range": size, "page": systemPageSize],
                samples: samples, opsPerRep: pages * calls)
        }
    }
}
