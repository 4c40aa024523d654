import FiberScheduler
import Glibc
import StackAllocators

/// `capacity`, continued: `suspended_million` (s, measured once), `--capacity-limit` jobs (1,000,000;
/// `--quick`: 1,000) waiting on one counter at once, on 2 workers with 64 KiB stacks from a slab (64 KiB
/// guards). The median is seconds until all are suspended; `extra`: `release_s` (from the counter
/// reaching zero to every job done), `rss_per_fiber_bytes` (VmRSS growth while all are suspended, per
/// job), `rss_start_bytes`, and `rss_after_shutdown_bytes` (VmRSS after shutdown and the slab's `trim()`).
enum SuspendedFibersBenchmark {
    static func run(_ recorder: BenchRecorder) throws {
        let jobs = recorder.capacityStacks
        let rssStart = try SystemFile.processStatusBytes("VmRSS")
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10), logger: benchLogger)
        var config = FiberConfig(allocator: slab)
        config.workerCount = 2
        config.usableSize = 64 << 10
        config.initialPoolSize = 16
        config.targetPoolSize = 16
        config.maxPoolSize = max(jobs, config.targetPoolSize)
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
        let rssSuspended = try SystemFile.processStatusBytes("VmRSS")
        let releaseStart = nanoseconds()
        gate.decrement()
        try done.wait()
        let release = nanoseconds() - releaseStart
        scheduler.shutdown()
        slab.trim()
        let rssAfter = try SystemFile.processStatusBytes("VmRSS")
        recorder.add(BenchResult(
            section: .capacity, name: "suspended_million", params: ["workers": 2, "jobs": jobs, "size": 64 << 10],
            unit: "s", samples: [Double(suspended) / 1e9], opsPerRep: jobs,
            extra: [
                "release_s": Double(release) / 1e9, "rss_per_fiber_bytes": Double(rssSuspended - rssStart) / Double(jobs),
                "rss_start_bytes": Double(rssStart), "rss_after_shutdown_bytes": Double(rssAfter),
            ]))
    }
}
