import CPeers
import Glibc
import StackAllocators
import StackDiagnostics

/// `pooled`: acquire+release of 64 KiB stacks from a `PooledStackAllocator` over a slab.
///
/// - `floor_stack_only`: a `Stack` made and dropped by an allocator that does nothing: the retain and
///   release of its allocator reference and the dynamic `release` call every allocator but the pool pays
///   (a pooled stack holds its pool unretained).
/// - `thread_cache` (`threads` 1, and 2 threads on one pool: the slower thread's figure): the default pool,
///   alternating with Boost's `pooled_fixedsize_stack` (no guard) within each repetition.
/// - `depot_mutex`: no thread cache, every acquire and release takes the depot's mutex.
/// - `write_release` (`depth`): 256 KiB stacks; acquire, write `depth` bytes below the top, release.
///   `write_release_scrub` and `write_release_discard`: the same with zeroing in place (`scrubOnRelease`)
///   and with discarding (`MADV_DONTNEED` on every release, then faulting back); `added_ns_per_kib` is
///   what each adds per KiB written (the median of per-repetition differences).
enum PoolBenchmarks {
    static let request = StackRequest(usableSize: 64 << 10)

    static func run(_ recorder: BenchRecorder) throws {
        let scale = recorder.scale
        let ops = scale.ops(2_000_000, quick: 1_000)
        let null = opaque(try NullStackAllocator() as any StackAllocator)
        let request = Self.request
        recorder.add(BenchResult(
            section: .pooled, name: "floor_stack_only", params: ["size": request.usableSize, "threads": 1],
            samples: try measure(scale, ops: ops) { try timeLoop(ops) { try null.allocate(request).release() } },
            opsPerRep: ops))
        try recorder.contest(.pooled, opsPerRep: ops, try threadCacheAgainstBoost(ops: ops))
        for threads in [1, 2] {
            let count = ops / 5
            let pool = try PooledStackAllocator(
                wrapping: try SlabStackAllocator(logger: benchLogger), .init(stack: request, threadCacheSize: 0),
                logger: benchLogger)
            let samples = try measureFigures(scale) { [try contended(pool, threads: threads, count: count)] }[0]
            recorder.add(BenchResult(
                section: .pooled, name: "depot_mutex", params: ["size": request.usableSize, "threads": threads],
                samples: samples, opsPerRep: count))
        }
        try hygiene(recorder)
    }

    /// The default pool on one thread and on two threads at once, and Boost's `pooled_fixedsize_stack` (no
    /// guard: unmatched), alternating within each repetition.
    static func threadCacheAgainstBoost(ops: Int) throws -> [Contender] {
        let pools = try [1, 2].map { _ in
            try PooledStackAllocator(wrapping: try SlabStackAllocator(logger: benchLogger), .init(stack: request), logger: benchLogger)
        }
        let boost = try peerObject("boost_pooled_fixedsize_stack") { fs_peer_boost_pool_create(request.usableSize) }
        return [1, 2].map { threads in
            .ours("thread_cache", ["size": request.usableSize, "threads": threads]) {
                try contended(pools[threads - 1], threads: threads, count: ops)
            }
        } + [
            .peer(
                "boost_pooled_fixedsize_stack", ["size": request.usableSize, "threads": 1],
                unmatched: ["guard_size: 0 vs \(request.guardSize)", "guard_kind: none"]
            ) { try peerNanoseconds("boost_pooled_fixedsize_stack") { fs_peer_boost_pool(boost, ops) } / Double(ops) },
        ]
    }

    /// Nanoseconds per acquire+release on the slowest of `threads` threads doing `count` each at once.
    /// One thread runs here, so the pool's thread cache stays warm from one repetition to the next.
    static func contended(_ pool: PooledStackAllocator, threads: Int, count: Int) throws -> Double {
        // A local copy: `Self.request` is a lazily initialized static, checked on every access.
        let request = Self.request
        let body: @Sendable () throws -> Double = {
            for _ in 0..<min(count, 1_000) { try pool.allocate(request).release() }
            return Double(try timeLoop(count) { try pool.allocate(request).release() }) / Double(count)
        }
        return threads == 1 ? try body() : try onThreads(threads, body).max()!
    }

    /// Scrub and discard cost per KiB written, at several depths, against the same pool without either.
    static func hygiene(_ recorder: BenchRecorder) throws {
        let size = 256 << 10
        let request = StackRequest(usableSize: size)
        let slab = try SlabStackAllocator(.init(usableSize: size), logger: benchLogger)
        func pool(scrub: Bool, _ watermark: PooledStackAllocator.HotWatermark?) throws -> PooledStackAllocator {
            try PooledStackAllocator(
                wrapping: slab, .init(stack: request, hotWatermark: watermark, scrubOnRelease: scrub), logger: benchLogger)
        }
        let plain = try pool(scrub: false, nil)
        let scrubbing = try pool(scrub: true, nil)
        let discarding = try pool(scrub: false, .init(bytes: 0, timing: .everyRelease))
        let iterations = recorder.scale.ops(1_000, quick: 20)
        for depth in [4 << 10, 16 << 10, 64 << 10, 256 << 10] {
            // The three pools alternate within each repetition, so outside load hits them alike.
            let columns = try measureFigures(recorder.scale) {
                try [plain, scrubbing, discarding].map { pool in
                    Double(try timeLoop(iterations) {
                        let stack = try pool.allocate(request)
                        memset(stack.top - depth, 0x5A, depth)
                        stack.release()
                    }) / Double(iterations)
                }
            }
            let params = ["size": size, "depth": depth]
            let kib = Double(depth >> 10)
            recorder.add(BenchResult(
                section: .pooled, name: "write_release", params: params, samples: columns[0], opsPerRep: iterations))
            for (index, name) in [(1, "write_release_scrub"), (2, "write_release_discard")] {
                let perKiB = zip(columns[index], columns[0]).map { ($0 - $1) / kib }
                recorder.add(BenchResult(
                    section: .pooled, name: name, params: params, samples: columns[index], opsPerRep: iterations,
                    extra: ["added_ns_per_kib": BenchResult.median(perKiB)]))
            }
        }
    }
}

/// Hands out one fixed descriptor and takes it back doing nothing: the cost of `Stack` itself.
private final class NullStackAllocator: StackAllocator {
    let descriptor: StackDescriptor

    init() throws {
        descriptor = StackDescriptor(
            layout: try StackLayout(base: 1 << 30, sizes: try StackSizes(usableSize: 64 << 10, guardSize: 0)), guardMechanism: .none)
    }

    func allocate(_ request: StackRequest) -> Stack { Stack(descriptor: descriptor, allocator: self) }
    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {}
}
