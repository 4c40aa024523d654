import CPeers
import FiberScheduler
import StackAllocators

/// `scheduler`: startup, job throughput, fan-out and `parallelFor` of `FiberScheduler`, the last three
/// alternating within each repetition with their peers on two threads (`workers` 2).
///
/// - `startup_lazy16`, `startup_eager128`, `startup_prefaulted` (µs): from `init` to the first job's
///   value back on this thread (shutdown not timed), 2 workers with 512 KiB stacks: 16 fibers per worker
///   (the default), 128 (`initialPoolSize`, an eager pool), and 16 populated at startup.
/// - `empty_jobs` (ns per job): a batch of empty jobs submitted from this thread and waited for, on a
///   running scheduler with 2 workers and 64 KiB stacks; peers: `withTaskGroup` (one child task per job),
///   Dispatch (`async(group:)`, one block per job), and `pthread_create`+join (fewer: unmatched).
/// - `fan_out` (µs): one job submits `jobs` empty jobs one by one under a counter and waits on it (its
///   fiber suspends); peers: the same count of task-group children, Dispatch blocks, and Boost.Fiber
///   fibers on its work_stealing scheduler with 2 threads.
/// - `parallel_for` (µs): `parallelFor` over `iterations` indices, each storing its index; peer:
///   `DispatchQueue.concurrentPerform` doing the same.
enum SchedulerBenchmarks {
    static let workers = 2

    static func run(_ recorder: BenchRecorder) throws {
        let scale = recorder.scale
        for (name, config) in startupConfigs() {
            recorder.progress("scheduler: \(name)")
            let samples = try measure(scale, ops: 1) { try startup(config) }.map { $0 / 1000 }
            recorder.add(BenchResult(
                section: .scheduler, name: name,
                params: ["workers": config.workerCount ?? 0, "fibers": config.initialPoolSize, "size": config.usableSize],
                unit: "us", samples: samples, opsPerRep: 1))
        }
        var config = FiberConfig()
        config.usableSize = 64 << 10
        config.workerCount = workers
        config.logger = benchLogger
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        try emptyJobs(recorder, scheduler)
        try fanOut(recorder, scheduler)
        for iterations in [10_000, 1_000_000] { try parallelFor(recorder, scheduler, iterations: scale.ops(iterations, quick: iterations / 100)) }
    }

    static func emptyJobs(_ recorder: BenchRecorder, _ scheduler: FiberScheduler) throws {
        let jobs = recorder.scale.ops(100_000, quick: 200)
        let threads = recorder.scale.ops(1_000, quick: 20)
        let batch = [@Sendable () throws -> Void](repeating: {}, count: jobs)
        let params = ["workers": workers, "jobs": jobs]
        try recorder.contest(.scheduler, opsPerRep: jobs, [
            .ours("empty_jobs", params) { Double(try timeLoop(1) { try scheduler.submit(batch: batch).wait() }) / Double(jobs) },
            .peer("taskgroup_empty_jobs", params) { SwiftPeers.taskGroup(jobs: jobs) / Double(jobs) },
            .peer("dispatch_empty_jobs", params) { SwiftPeers.dispatch(jobs: jobs) / Double(jobs) },
            .peer("pthread_create_join", ["jobs": threads], unmatched: ["ops_per_rep: \(threads) vs \(jobs)", "workers: a thread per job"], opsPerRep: threads) {
                try peerNanoseconds("pthread_create_join") { fs_peer_pthread_create_join(threads) } / Double(threads)
            },
        ])
    }

    static func fanOut(_ recorder: BenchRecorder, _ scheduler: FiberScheduler) throws {
        let children = recorder.scale.ops(10_000, quick: 100)
        let fibers = try peerObject("boost_fiber_fan_out") { fs_peer_boost_fiber_runner(Int32(workers)) }
        let params = ["workers": workers, "jobs": children]
        try recorder.contest(.scheduler, opsPerRep: children, [
            .ours("fan_out", params, unit: "us") {
                Double(try scheduler.submit { () throws -> UInt64 in
                    let start = nanoseconds()
                    let counter = JobCounter()
                    let current = FiberScheduler.current!
                    for _ in 0..<children { current.submit(counter: counter) {} }
                    try counter.wait()
                    return nanoseconds() - start
                }.wait()) / 1000
            },
            .peer("taskgroup_fan_out", params, unit: "us") { SwiftPeers.taskGroup(jobs: children) / 1000 },
            .peer("dispatch_fan_out", params, unit: "us") { SwiftPeers.dispatch(jobs: children) / 1000 },
            .peer("boost_fiber_fan_out", params, unit: "us", unmatched: ["stack: Boost.Fiber's default (unguarded) vs 65536"]) {
                try peerNanoseconds("boost_fiber_fan_out") { fs_peer_boost_fiber_fan_out(fibers, children) } / 1000
            },
        ])
    }

    static func parallelFor(_ recorder: BenchRecorder, _ scheduler: FiberScheduler, iterations: Int) throws {
        let slots = Slots(count: iterations)
        let params = ["workers": workers, "iterations": iterations]
        try recorder.contest(.scheduler, opsPerRep: iterations, [
            .ours("parallel_for", params, unit: "us") {
                Double(try timeLoop(1) { try scheduler.parallelFor(0..<iterations) { slots.store($0) } }) / 1000
            },
            .peer("concurrent_perform", params, unit: "us") {
                SwiftPeers.concurrentPerform(iterations: iterations) { slots.store($0) } / 1000
            },
        ])
    }

    /// One word per index, written by whichever thread runs the index.
    final class Slots: @unchecked Sendable {
        private let words: UnsafeMutablePointer<Int>
        init(count: Int) { words = .allocate(capacity: count) }
        deinit { words.deallocate() }
        func store(_ index: Int) { words[index] = index }
    }

    /// 2 workers x 16 fibers x 512 KiB (the defaults otherwise), eager 2 x 128, and 2 x 16 prefaulted.
    static func startupConfigs() -> [(String, FiberConfig)] {
        var lazy = FiberConfig()
        lazy.workerCount = workers
        lazy.logger = benchLogger
        var eager = lazy
        eager.initialPoolSize = 128
        var prefaulted = lazy
        prefaulted.prefault = .populate
        prefaulted.prefaultInitialPool = true
        return [("startup_lazy16", lazy), ("startup_eager128", eager), ("startup_prefaulted", prefaulted)]
    }

    /// Nanoseconds from `init` to the first job's value back on this thread.
    static func startup(_ config: FiberConfig) throws -> UInt64 {
        let start = nanoseconds()
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        try scheduler.submit {}.wait()
        return nanoseconds() - start
    }
}
