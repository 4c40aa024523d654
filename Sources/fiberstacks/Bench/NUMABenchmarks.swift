import ArgumentParser
import StackAllocators

/// `fiberstacks bench-numa` (hidden): what NUMA placement costs on this host, in one run: allocate +
/// populate + release of a stack with and without a bind placement, mbind alone, and the placement
/// query (move_pages) per page. Host numbers only: in scripts/numa-vm the nodes are emulated.
struct BenchNUMA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-numa",
        abstract:
            "Benchmark NUMA bind + prefault and placement verification (use a release build; see docs/benchmarks.md).",
        shouldDisplay: false)

    @Flag(help: "Write the report as JSON to standard output.")
    var json = false

    @Flag(help: "Tiny counts: a smoke test.")
    var quick = false

    @Option(help: "Repetitions per figure (after warm-up).")
    var reps = 15

    func validate() throws {
        guard reps > 0 else { throw ValidationError("--reps must be positive") }
    }

    func run() throws {
        let scale = BenchScale(reps: quick ? 3 : reps, warmups: quick ? 1 : 2, quick: quick)
        let report = BenchReport(
            machine: BenchMachine.current(), quick: quick, results: try NUMABenchmarks.run(scale), peers: nil,
            peersSkipped: "bench-numa has no peers", ratios: [])
        if json {
            print(try encodeJSON(report))
        } else {
            report.printTable()
        }
    }
}

extension [Double] {
    /// The middle value (the upper one of an even count).
    fileprivate var median: Double { isEmpty ? 0 : sorted()[count / 2] }
}

/// The figures of `bench-numa`.
enum NUMABenchmarks {
    static let stackSize = 256 << 10

    static func run(_ scale: BenchScale) throws -> [BenchResult] {
        let node = try NUMATopology.current().memoryNodes.first ?? 0
        let allocator = try MmapStackAllocator()
        let ops = scale.ops(1_000, quick: 10)
        let params = ["size": stackSize, "node": node]
        let populate = PrefaultPolicy(.populate)
        let requests = [
            StackRequest(usableSize: stackSize, prefault: populate),
            StackRequest(usableSize: stackSize, prefault: populate, placement: .bind(node)),
        ]
        // The two alternate within each repetition, so load from elsewhere hits both alike.
        var samples: [[Double]] = [[], []]
        for repetition in 0..<(scale.warmups + scale.reps) {
            for (index, request) in requests.enumerated() {
                let elapsed = try timeLoop(ops) { try allocator.allocate(request).release() }
                if repetition >= scale.warmups { samples[index].append(Double(elapsed) / Double(ops)) }
            }
        }
        let alone = BenchResult(
            section: "numa", name: "alloc_populate", params: params, samples: samples[0], opsPerRep: ops)
        let bound = BenchResult(
            section: "numa", name: "alloc_bind_populate", params: params, samples: samples[1], opsPerRep: ops
        ).withExtra(["overhead_ns": samples[1].median - samples[0].median, "ratio": samples[1].median / samples[0].median])
        return [
            alone, bound, try bindAlone(scale, node: node, untouched: true, allocator: allocator),
            try bindAlone(scale, node: node, untouched: false, allocator: allocator),
        ] + (try placementQuery(scale, allocator: allocator))
    }

    /// `NUMABinding.apply` alone on fresh stacks (allocation and release not timed): as allocators call it
    /// (`untouched`: no flags), and with the default `.move` (MPOL_MF_MOVE: the kernel drains every CPU's
    /// LRU cache first).
    static func bindAlone(_ scale: BenchScale, node: Int, untouched: Bool, allocator: MmapStackAllocator) throws
        -> BenchResult
    {
        let count = scale.ops(256, quick: 4)
        let samples = try measure(scale, ops: count) {
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
            defer {
                storage.deinitialize(count: count)
                storage.deallocate()
            }
            for index in 0..<count {
                (storage + index).initialize(to: try allocator.allocate(StackRequest(usableSize: stackSize)))
            }
            let start = nanoseconds()
            for index in 0..<count {
                let layout = storage[index].descriptor.layout
                try NUMABinding.apply(.bind(node), to: layout.base..<layout.top, untouched: untouched)
            }
            return nanoseconds() - start
        }
        return BenchResult(
            section: "numa", name: untouched ? "mbind_untouched" : "mbind_move",
            params: ["size": stackSize, "node": node], samples: samples, opsPerRep: count)
    }

    /// `PlacementReport` (move_pages with nodes NULL) per page: over one 256 KiB stack (64 pages, one
    /// call) and over a 64 MiB populated range (16 384 pages, 16 calls).
    static func placementQuery(_ scale: BenchScale, allocator: MmapStackAllocator) throws -> [BenchResult] {
        try [stackSize, scale.ops(64 << 20, quick: 1 << 20)].map { size in
            let stack = try allocator.allocate(
                StackRequest(usableSize: size, guardSize: 0, prefault: PrefaultPolicy(.populate)))
            let pages = size / systemPageSize
            let calls = max(1, scale.ops(64 << 20, quick: 1 << 20) / size)
            let samples = try measure(scale, ops: pages * calls) {
                try timeLoop(calls) { _ = try stack.placementReport() }
            }
            return BenchResult(
                section: "numa", name: "placement_query", params: ["range": size, "page": systemPageSize],
                samples: samples, opsPerRep: pages * calls)
        }
    }
}
