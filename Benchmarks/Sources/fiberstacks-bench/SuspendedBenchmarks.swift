import FiberScheduler
import Foundation
@_spi(Benchmarks) import GuardPages
import StackAllocators
import Synchronization

/// `suspended`: `jobs` jobs suspended at once (each waits on one shared `JobCounter`), on 2 workers with
/// 64 KiB stacks and 64 KiB guards carved from a slab. Measured once (`reps` 1).
///
/// `extra`: `suspend_s` (from the first submit until the workers have suspended every job),
/// `resume_s` (from the release until every job is done), `rss_per_fiber_bytes` (VmRSS growth with all
/// suspended, over `jobs`), `page_table_bytes` (VmPTE growth), `shutdown_s` (the scheduler's
/// `shutdown()` and the slab's `trim()`, every stack going back), and `rss_after_ratio` (VmRSS after
/// shutdown and the slab's `trim()` over VmRSS before the scheduler started) with `anon_after_bytes`
/// (the RssAnon part of what stayed). A warm-up of the same shape with 1,000 jobs runs first, so the
/// start already holds the code and the one-time structures any run pages in (cold, the library code
/// paged in during the run alone is about 14 MB of RssFile). The Go peer, `go_goroutines` (as many
/// goroutines blocked on one channel, `GOMAXPROCS=2`; `GoPeer`), runs after ours with the same `jobs`,
/// warm-up and `extra`; without `go`, or when its build or run fails, it is a skip naming the cause.
enum SuspendedBenchmarks {
    /// The longest the section waits for the jobs to suspend or to finish.
    static let timeLimit = 120.0

    static func run(_ recorder: BenchRecorder) throws {
        let jobs = recorder.suspendedJobs
        _ = try suspend(min(jobs, 1_000))
        let extra = try suspend(jobs)
        recorder.add(BenchResult(
            section: .suspended, name: "suspended_jobs", params: ["workers": 2, "size": 64 << 10, "jobs": jobs],
            unit: "s", samples: [extra["suspend_s"]!], opsPerRep: jobs, extra: extra))
        runGoPeer(recorder, jobs: jobs)
    }

    /// Suspends `jobs` jobs at once, resumes them, shuts down and trims; returns the figures.
    static func suspend(_ jobs: Int) throws -> [String: Double] {
        let (rssStart, anonStart) = (try SystemFile.processStatusBytes("VmRSS"), try SystemFile.processStatusBytes("RssAnon"))
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10), logger: benchLogger)
        var config = FiberConfig(allocator: slab)
        config.usableSize = 64 << 10
        config.workerCount = 2
        config.initialPoolSize = 16
        config.targetPoolSize = 16
        config.maxPoolSize = max(jobs, config.targetPoolSize)
        config.logger = benchLogger
        var extra: [String: Double] = ["jobs": Double(jobs)]
        var shutdownStart: UInt64 = 0
        do {
            let scheduler = try FiberScheduler(config: config)
            defer {
                shutdownStart = nanoseconds()
                scheduler.shutdown()
            }
            let (rssBefore, pteBefore) = (try SystemFile.processStatusBytes("VmRSS"), try SystemFile.processStatusBytes("VmPTE"))
            let gate = JobCounter(1)
            let progress = Progress()
            let done = JobCounter()
            let start = nanoseconds()
            for _ in 0..<jobs {
                scheduler.submit(counter: done) {
                    try gate.wait()
                    progress.finished.add(1, ordering: .relaxed)
                }
            }
            try waitUntil("all \(jobs) jobs suspended") {
                scheduler.stats.workers.map(\.suspensions).reduce(0, +) >= jobs
            }
            let suspended = nanoseconds() - start
            let (rssLive, pteLive) = (try SystemFile.processStatusBytes("VmRSS"), try SystemFile.processStatusBytes("VmPTE"))
            let release = nanoseconds()
            gate.decrement()
            try waitUntil("all \(jobs) jobs done") { progress.finished.load(ordering: .relaxed) == jobs }
            try done.wait()
            let resumed = nanoseconds() - release
            extra["suspend_s"] = Double(suspended) / 1e9
            extra["resume_s"] = Double(resumed) / 1e9
            extra["rss_per_fiber_bytes"] = Double(rssLive - rssBefore) / Double(jobs)
            extra["page_table_bytes"] = Double(pteLive - pteBefore)
        }
        _ = slab.trim()
        extra["shutdown_s"] = Double(nanoseconds() - shutdownStart) / 1e9
        extra["rss_after_ratio"] = Double(try SystemFile.processStatusBytes("VmRSS")) / Double(rssStart)
        extra["anon_after_bytes"] = Double(try SystemFile.processStatusBytes("RssAnon") - anonStart)
        return extra
    }

    /// Builds and runs the Go peer with `jobs` goroutines, or records why it did not run.
    static func runGoPeer(_ recorder: BenchRecorder, jobs: Int) {
        recorder.progress("suspended jobs=\(jobs) workers=2: peer go_goroutines (go build of Benchmarks/GoPeer, then a child process)")
        do {
            let go = try GoPeer.measure(jobs: jobs, timeLimit: timeLimit)
            recorder.progress("suspended: peer go_goroutines measured with \(go.goVersion)")
            recorder.addPeer(BenchResult(
                section: .suspended, name: "go_goroutines", params: ["workers": 2, "jobs": jobs], unit: "s",
                samples: [go.values["suspend_s"]!], opsPerRep: jobs, extra: go.values, unmatched: GoPeer.unmatched))
        } catch {
            recorder.skip(.suspended, "go_goroutines", because: error.description)
        }
    }

    /// How many jobs have finished.
    final class Progress: Sendable {
        let finished = Atomic<Int>(0)
    }

    /// Polls `condition` every millisecond for up to `timeLimit` seconds (the Go peer polls as often). The
    /// poller shares the 2 CPUs with the workers: polled every 100 µs, its wake-ups slowed what it measures
    /// (`--section suspended`, resume 0.44–0.46 s against 0.41 s polled every millisecond).
    static func waitUntil(_ what: String, _ condition: () -> Bool) throws {
        let deadline = nanoseconds() + UInt64(timeLimit * 1e9)
        while !condition() {
            guard nanoseconds() < deadline else { throw BenchFailure("suspended: not \(what) within \(Int(timeLimit)) s") }
            usleep(1_000)
        }
    }
}
