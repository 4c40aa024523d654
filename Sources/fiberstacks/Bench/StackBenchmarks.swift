import StackAllocators

/// Allocate+release for the mmap allocator per guard mechanism and size, and prefault per strategy.
enum StackBenchmarks {
    static let sizes = [64 << 10, 256 << 10, 1 << 20]

    static func run(_ scale: BenchScale) throws -> [BenchResult] {
        var results: [BenchResult] = []
        var configurations: [(String, GuardMode, Int)] = [("mmap_mprotect", .mprotect, StackRequest.defaultGuardSize)]
        if GuardInstaller.lightweightGuardsSupported {
            configurations.insert(("mmap_lightweight", .lightweight, StackRequest.defaultGuardSize), at: 0)
        }
        configurations.append(("mmap_unguarded", .automatic, 0))
        let ops = scale.ops(2_000, quick: 20)
        for (name, mode, guardSize) in configurations {
            let allocator = try MmapStackAllocator(guardMode: mode)
            for size in sizes {
                let request = StackRequest(usableSize: size, guardSize: guardSize)
                let samples = try measure(scale, ops: ops) {
                    try timeLoop(ops) { try allocator.allocate(request).release() }
                }
                results.append(BenchResult(
                    section: "stack_alloc", name: name, params: ["size": size, "guard": guardSize],
                    samples: samples, opsPerRep: ops))
            }
        }
        results += try prefault(scale)
        return results
    }

    /// ns per page of `Prefault.apply` on a fresh 1 MiB stack, one stack at a time (allocation and
    /// release not timed), as the peer harness measures its prefault.
    static func prefault(_ scale: BenchScale) throws -> [BenchResult] {
        let allocator = try MmapStackAllocator()
        let stacksPerRep = scale.ops(32, quick: 2)
        let stackSize = 1 << 20
        let pages = stacksPerRep * stackSize / systemPageSize
        return try [PrefaultStrategy.touch, .populate].map { strategy in
            let samples = try measure(scale, ops: pages) {
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
                section: "prefault", name: "\(strategy)_4k", params: ["mapping_bytes": stackSize, "page": systemPageSize],
                samples: samples, opsPerRep: pages)
            return result.withExtra(["gbps": Double(systemPageSize) / result.median])
        }
    }
}

extension BenchResult {
    /// The same result with `extra` figures added.
    func withExtra(_ figures: [String: Double]) -> BenchResult {
        var copy = self
        copy.extra = (extra ?? [:]).merging(figures) { $1 }
        return copy
    }
}
