import Dispatch
import Glibc
import FiberScheduler
import StackAllocators
import Synchronization

/// `scheduler`, continued: single submissions, `parallelFor`, and a million suspended jobs.
///
/// - `fan_out_single` (µs): 10,000 empty jobs submitted one at a time from this thread under one
///   counter, until the counter is zero; `extra.dispatch_us` is the same with
///   `DispatchQueue.global().async(group:)` per job, measured in the same repetitions.
/// - `parallel_for` (µs): `parallelFor` over `iterations` (10,000 and 1,000,000) empty iterations from
///   this thread; `extra.concurrent_perform_us` is `DispatchQueue.concurrentPerform` over the same count,
///   measured in the same repetitions.
/// - `suspended_million` (s, measured once): `jobs` (1,000,000) jobs wait on one counter at once, on 2
///   workers with 64 KiB stacks from a slab (64 KiB guards): the median is seconds until all are
///   suspended; `extra`: `release_s` (from the counter reaching zero to every job done),
///   `rss_per_fiber_bytes` (VmRSS growth while all are suspended, per job), `rss_start_bytes`, and
///   `rss_after_shutdown_bytes` (VmRSS after shutdown and the slab's `trim()`).
enum SchedulerScaleBenchmarks {
    static func run(_ recorder: BenchRecorder, on scheduler: FiberScheduler) throws {
        let scale = recorder.scale
        let singles = scale.ops(10_000, quick: 100)
        let fanOut = try measureFigures(scale) {
            let counter = JobCounter()
            let start = nanoseconds()
            for _ in 0..<singles { scheduler.submit(counter: counter) {} }
            try counter.wait()
            let ours = nanoseconds() - start
            let group = DispatchGroup()
            let dispatchStart = nanoseconds()
            for _ in 0..<singles { DispatchQueue.global().async(group: group) {} }
            group.wait()
            return [Double(ours) / 1000, Double(nanoseconds() - dispatchStart) / 1000]
        }
        recorder.add(BenchResult(
            section: .scheduler, name: "fan_out_single", params: ["workers": scheduler.workerCount, "jobs": singles],
            unit: "us", samples: fanOut[0], opsPerRep: 1, extra: ["dispatch_us": BenchResult.median(fanOut[1])]))
        for iterations in [scale.ops(10_000, quick: 100), scale.ops(1_000_000, quick: 1_000)] {
            let columns = try measureFigures(scale) {
                let start = nanoseconds()
                try scheduler.parallelFor(0..<iterations) { _ in }
                let ours = nanoseconds() - start
                let performStart = nanoseconds()
                DispatchQueue.concurrentPerform(iterations: iterations) { _ in }
                return [Double(ours) / 1000, Double(nanoseconds() - performStart) / 1000]
            }
            recorder.add(BenchResult(
                section: .scheduler, name: "parallel_for",
                params: ["workers": scheduler.workerCount, "iterations": iterations], unit: "us", samples: columns[0],
                opsPerRep: 1, extra: ["concurrent_perform_us": BenchResult.median(columns[1])]))
        }
        try suspendedMillion(recorder)
    }

    /// `jobs` jobs suspended at once on one counter; see the type's documentation.
    static func suspendedMillion(_ recorder: BenchRecorder) throws {
        let jobs = recorder.scale.ops(1_000_000, quick: 1_000)
        let rssStart = try CapacityBenchmarks.statusBytes("VmRSS")
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10), logger: benchLogger)
        var config = FiberConfig(allocator: slab)
        config.workerCount = 2
        config.stackSize = 64 << 10
        config.initialPoolSize = 16
        config.targetPoolSize = 16
        config.maxPoolSize = jobs
        config.logger = benchLogger
        let scheduler = try FiberScheduler(config: config)
        let gate = JobCounter(1)
        let done = JobCounter()
        let start = nanoseconds()
        for _ in 0..<jobs { scheduler.submit(counter: done) { try gate.wait() } }
        let deadline = start + 600_000_000_000
        while scheduler.stats.workers.map(\.suspensions).reduce(0, +) < jobs {
            guard nanoseconds() < deadline else {
                scheduler.shutdown(.cancel)
                throw BenchFailure("suspended_million: not every job suspended within 600 s")
            }
            usleep(1_000)
        }
        let suspended = nanoseconds() - start
        let rssSuspended = try CapacityBenchmarks.statusBytes("VmRSS")
        let releaseStart = nanoseconds()
        gate.decrement()
        try done.wait()
        let release = nanoseconds() - releaseStart
        scheduler.shutdown()
        slab.trim()
        let rssAfter = try CapacityBenchmarks.statusBytes("VmRSS")
        recorder.add(BenchResult(
            section: .scheduler, name: "suspended_million", params: ["workers": 2, "jobs": jobs, "size": 64 << 10],
            unit: "s", samples: [Double(suspended) / 1e9], opsPerRep: jobs,
            extra: [
                "release_s": Double(release) / 1e9, "rss_per_fiber_bytes": Double(rssSuspended - rssStart) / Double(jobs),
                "rss_start_bytes": Double(rssStart), "rss_after_shutdown_bytes": Double(rssAfter),
            ]))
    }
}
