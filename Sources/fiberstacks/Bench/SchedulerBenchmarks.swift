import FiberScheduler
import StackAllocators

/// `scheduler`: startup, job throughput and fan-out of `FiberScheduler`.
///
/// - `startup_lazy16`, `startup_eager128`, `startup_prefaulted` (µs): from `init` to the first job's
///   value back on this thread (shutdown not timed), 2 workers with 512 KiB stacks: 16 fibers per worker
///   (the default), 128 (`initialPoolSize`, an eager pool), and 16 populated at startup
///   (`prefault = .populate`, `prefaultInitialPool`).
/// - `empty_jobs` (ns per job): a batch of empty jobs submitted from this thread and waited for, on a
///   running scheduler with a worker per CPU and 64 KiB stacks.
/// - `fan_out` (µs): one job spawns `jobs` empty jobs as a batch and waits on its counter (its fiber
///   suspends; the workers run the children).
/// - `fan_out_single`, `parallel_for`, `suspended_million`: see `SchedulerScaleBenchmarks`.
enum SchedulerBenchmarks {
    static func run(_ recorder: BenchRecorder) throws {
        let scale = recorder.scale
        for (name, config) in startupConfigs() {
            let samples = try measure(scale, ops: 1) { try startup(config) }.map { $0 / 1000 }
            recorder.add(BenchResult(
                section: .scheduler, name: name,
                params: ["workers": config.workerCount ?? 0, "fibers": config.initialPoolSize, "size": config.usableSize],
                unit: "us", samples: samples, opsPerRep: 1))
        }
        var config = FiberConfig()
        config.usableSize = 64 << 10
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        let jobs = scale.ops(200_000, quick: 200)
        let batch = [@Sendable () throws -> Void](repeating: {}, count: jobs)
        recorder.add(BenchResult(
            section: .scheduler, name: "empty_jobs", params: ["workers": scheduler.workerCount, "jobs": jobs],
            samples: try measure(scale, ops: jobs) { try timeLoop(1) { try scheduler.submit(batch: batch).wait() } },
            opsPerRep: jobs))
        let children = scale.ops(10_000, quick: 100)
        let fanOut = try measure(scale, ops: 1) {
            try scheduler.submit { () throws -> UInt64 in
                let start = nanoseconds()
                try FiberScheduler.current!.submit(batch: [@Sendable () throws -> Void](repeating: {}, count: children)).wait()
                return nanoseconds() - start
            }.wait()
        }
        recorder.add(BenchResult(
            section: .scheduler, name: "fan_out", params: ["workers": scheduler.workerCount, "jobs": children],
            unit: "us", samples: fanOut.map { $0 / 1000 }, opsPerRep: 1))
        try SchedulerScaleBenchmarks.run(recorder, on: scheduler)
    }

    /// 2 workers x 16 fibers x 512 KiB (the defaults otherwise), eager 2 x 128, and 2 x 16 prefaulted.
    static func startupConfigs() -> [(String, FiberConfig)] {
        var lazy = FiberConfig()
        lazy.workerCount = 2
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
