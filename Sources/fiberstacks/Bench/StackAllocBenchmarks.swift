import StackAllocators

/// `stack_alloc`: allocate+release of one stack, per allocator, guard kind and size.
///
/// - `mmap_<guard>`: `MmapStackAllocator`, one stack at a time (mmap, guard, munmap: the cold path).
/// - `slab_cold_<guard>`: `SlabStackAllocator` carving never-used slots: `count` stacks allocated (all
///   live), then released; a fresh slab per repetition. `extra`: the allocate and release halves, and the
///   per-stack share of unmapping the slab's regions afterwards (`teardown_ns`, not in the median).
/// - `slab_reused_<guard>`: the same slab's released slots allocated and released again.
/// - `huge_<backing>`: `HugePageStackAllocator`, one stack per region of one 2 MiB page (hugetlb stacks
///   are populated at allocation, always; THP stacks are not prefaulted).
enum StackAllocBenchmarks {
    static let sizes = [64 << 10, 256 << 10, 1 << 20]

    static func run(_ recorder: BenchRecorder) throws {
        let scale = recorder.scale
        var modes: [(String, GuardMode)] = [("mprotect", .protNone)]
        if GuardInstaller.lightweightGuardsSupported {
            modes.insert(("lightweight", .lightweight), at: 0)
        } else {
            recorder.skip(.stackAlloc, "mmap_lightweight", because: "MADV_GUARD_INSTALL needs Linux >= 6.13 (this is \(kernelRelease))")
        }
        let ops = scale.ops(2_000, quick: 20)
        for (name, mode, guardSize) in modes.map({ ($0.0, $0.1, StackRequest.defaultGuardSize) }) + [("unguarded", .automatic, 0)] {
            let allocator = try MmapStackAllocator(guardMode: mode, logger: benchLogger)
            for size in sizes {
                let request = StackRequest(usableSize: size, guardSize: guardSize)
                let samples = try measure(scale, ops: ops) {
                    try timeLoop(ops) { try allocator.allocate(request).release() }
                }
                recorder.add(BenchResult(
                    section: .stackAlloc, name: "mmap_\(name)", params: ["size": size, "guard": guardSize],
                    samples: samples, opsPerRep: ops))
            }
        }
        for (name, mode) in modes { try slab(recorder, guardName: name, mode: mode) }
        try hugeRegions(recorder)
    }

    /// Cold carve and reuse of 64 KiB slab stacks with a 64 KiB guard of `mode`.
    static func slab(_ recorder: BenchRecorder, guardName: String, mode: GuardMode) throws {
        let count = recorder.scale.ops(10_000, quick: 50)
        let request = StackRequest(usableSize: 64 << 10)
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
        defer { storage.deallocate() }
        /// Allocates `count` stacks (all live), then releases them: nanoseconds for each half.
        func allocateThenRelease(_ slab: SlabStackAllocator) throws -> (UInt64, UInt64) {
            var index = 0
            let allocate = try timeLoop(count) {
                (storage + index).initialize(to: try slab.allocate(request))
                index += 1
            }
            let release = timeLoop(count) {
                index -= 1
                (storage + index).deinitialize(count: 1)
            }
            return (allocate, release)
        }
        let columns = try measureFigures(recorder.scale) {
            // Emptied regions stay mapped, so the second pass reuses the released slots.
            var slab: SlabStackAllocator? = try SlabStackAllocator(
                .init(guardMode: mode, retainedEmptyRegions: .max), logger: benchLogger)
            let cold = try allocateThenRelease(slab!)
            let reused = try allocateThenRelease(slab!)
            let start = nanoseconds()
            slab = nil
            let teardown = nanoseconds() - start
            return [cold.0, cold.1, reused.0, reused.1, teardown].map { Double($0) / Double(count) }
        }
        let params = ["size": 64 << 10, "guard": StackRequest.defaultGuardSize]
        let cold = zip(columns[0], columns[1]).map(+)
        let reused = zip(columns[2], columns[3]).map(+)
        recorder.add(
            BenchResult(
                section: .stackAlloc, name: "slab_cold_\(guardName)", params: params, samples: cold, opsPerRep: count,
                extra: [
                    "allocate_ns": BenchResult.median(columns[0]), "release_ns": BenchResult.median(columns[1]),
                    "teardown_ns": BenchResult.median(columns[4]),
                ]),
            BenchResult(
                section: .stackAlloc, name: "slab_reused_\(guardName)", params: params, samples: reused, opsPerRep: count,
                extra: ["allocate_ns": BenchResult.median(columns[2]), "release_ns": BenchResult.median(columns[3])]))
    }

    /// One stack per region of one 2 MiB page, for each huge-page backing.
    static func hugeRegions(_ recorder: BenchRecorder) throws {
        let allocator = HugePageStackAllocator(logger: benchLogger)
        let ops = recorder.scale.ops(20, quick: 2)
        let backings: [(String, HugePageRequest.Backing)] = [
            ("huge_anonymous", .anonymous), ("huge_hugetlbfs", .hugetlbfs()), ("huge_thp", .transparent),
        ]
        for (name, backing) in backings {
            try recorder.figure(.stackAlloc, name) {
                let request = StackRequest(usableSize: 2 << 20, pages: .huge(HugePageRequest(backing)))
                let pageSize = try allocator.allocate(request).pageSize
                let samples = try measure(recorder.scale, ops: ops) {
                    try timeLoop(ops) { try allocator.allocate(request).release() }
                }
                recorder.add(BenchResult(
                    section: .stackAlloc, name: name,
                    params: ["size": 2 << 20, "guard": StackRequest.defaultGuardSize, "page": pageSize],
                    samples: samples, opsPerRep: ops))
            }
        }
    }
}
