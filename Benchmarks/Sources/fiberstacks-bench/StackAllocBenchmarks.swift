import CPeers
@_spi(Benchmarks) import GuardPages
import StackAllocators

/// `stack_alloc`: allocate+release of one stack, per allocator, guard kind and size, each size
/// alternating with the peers within every repetition (the same operation count, stack size and guard).
///
/// - `mmap_<guard>`: `MmapStackAllocator`, one stack at a time (mmap, guard, munmap: the cold path).
///   `mmap_<guard>_used` (64 KiB): the same stack used, its top word written before the release, as a fiber's
///   first frame does: that write costs an mprotect-guarded stack the page table and anon_vma a lightweight
///   guard sets up when installed.
/// - `slab_cold_<guard>` (64 KiB): a fresh `SlabStackAllocator` per repetition, `ops` stacks allocated (all
///   live) then released; unmapping the slab afterwards is not timed.
/// - `slab_reused_<guard>` (64 KiB): the same on one slab whose released slots are reused.
/// - Peers: Boost `protected_fixedsize_stack` (a 4 KiB mprotect guard, its own mmap flags: unmatched), and
///   plain C doing our syscalls with our mmap flags: `mmap_mprotect` and `mmap_guard_install` (mmap, the
///   guard call, munmap), and their `_used` forms at 64 KiB.
/// - `huge_<backing>`: `HugePageStackAllocator`, one stack per region of one 2 MiB page.
enum StackAllocBenchmarks {
    static let sizes = [64 << 10, 256 << 10, 1 << 20]

    static func run(_ recorder: BenchRecorder) throws {
        let ops = recorder.scale.ops(2_000, quick: 20)
        let guardSize = StackRequest.defaultGuardSize
        let lightweight = GuardInstaller.lightweightGuardsSupported
        for name in ["mmap_lightweight", "mmap_lightweight_used"] where !lightweight {
            recorder.skip(.stackAlloc, name, because: GuardInstaller.lightweightGuards.missing ?? "")
        }
        let modes: [(String, GuardMode)] = (lightweight ? [("lightweight", .lightweight)] : []) + [("mprotect", .protNone)]
        for size in sizes {
            let params = ["size": size, "guard": guardSize]
            // Stacks used as a fiber uses them (the top word written) at 64 KiB only.
            let uses = size == 64 << 10 ? [false, true] : [false]
            var contenders: [Contender] = []
            for (name, mode) in modes + [("unguarded", .automatic)] {
                let allocator = try MmapStackAllocator(guardMode: mode, logger: benchLogger)
                let request = StackRequest(usableSize: size, guardSize: name == "unguarded" ? 0 : guardSize)
                for used in uses where !used || name != "unguarded" {
                    let figure = "mmap_\(name)\(used ? "_used" : "")"
                    contenders.append(.ours(figure, ["size": size, "guard": request.guardSize]) {
                        Double(try timeLoop(ops) {
                            let stack = try allocator.allocate(request)
                            if used { writeTopWord(of: stack.descriptor.layout) }
                            stack.release()
                        }) / Double(ops)
                    })
                }
            }
            if size == 64 << 10 {
                for (name, mode) in modes { contenders += try slab(guardName: name, mode: mode, count: ops, params: params) }
            }
            let boostDiffers = [
                "guard_size: 4096 vs \(guardSize)", "guard_kind: mprotect", "mmap_flags: no MAP_NORESERVE|MAP_STACK",
            ]
            contenders.append(.peer("boost_protected_fixedsize_stack", params, unmatched: boostDiffers) {
                try peerNanoseconds("boost_protected_fixedsize_stack") {
                    fs_peer_boost_protected_stack(size, ops)
                } / Double(ops)
            })
            let flags = StackLayout.mappingFlags
            for used in uses {
                let suffix = used ? "_used" : ""
                contenders.append(.peer("mmap_mprotect\(suffix)", params) {
                    try peerNanoseconds("mmap_mprotect\(suffix)") {
                        fs_peer_mmap_mprotect(size, guardSize, flags, used, ops)
                    } / Double(ops)
                })
                if lightweight {
                    contenders.append(.peer("mmap_guard_install\(suffix)", params) {
                        try peerNanoseconds("mmap_guard_install\(suffix)") {
                            fs_peer_mmap_guard_install(size, guardSize, flags, used, ops)
                        } / Double(ops)
                    })
                }
            }
            try recorder.contest(.stackAlloc, opsPerRep: ops, contenders)
        }
        try hugeRegions(recorder)
    }

    /// Writes the top word of the stack's usable range, as a fiber's first frame does.
    static func writeTopWord(of layout: StackLayout) {
        UnsafeMutableRawPointer(bitPattern: layout.top - 8)!.storeBytes(of: 1, as: UInt64.self)
    }

    /// Cold carve (a fresh slab each repetition) and reuse (one slab) of `count` 64 KiB stacks with a
    /// 64 KiB guard of `mode`: each repetition allocates them all, then releases them all.
    static func slab(guardName: String, mode: GuardMode, count: Int, params: [String: Int]) throws -> [Contender] {
        let request = StackRequest(usableSize: 64 << 10)
        let configuration = SlabStackAllocator.Configuration(guardMode: mode, retainedEmptyRegions: .max)
        let reused = try SlabStackAllocator(configuration, logger: benchLogger)
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
        /// Nanoseconds per stack to allocate `count` stacks (all live), then release them.
        func allocateThenRelease(_ slab: SlabStackAllocator) throws -> Double {
            let start = nanoseconds()
            for index in 0..<count { (storage + index).initialize(to: try slab.allocate(request)) }
            storage.deinitialize(count: count)
            return Double(nanoseconds() - start) / Double(count)
        }
        return [
            .ours("slab_cold_\(guardName)", params) {
                let slab = try SlabStackAllocator(configuration, logger: benchLogger)
                return try withExtendedLifetime(slab) { try allocateThenRelease(slab) }  // unmapping not timed
            },
            .ours("slab_reused_\(guardName)", params) { try allocateThenRelease(reused) },
        ]
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
                let pageSize = try allocator.allocate(request).descriptor.layout.sizes.pageSize
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
