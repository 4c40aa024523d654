import ArgumentParser
import CFiberContext
import FiberScheduler
import Glibc

/// `fiberstacks bench-scheduler` (hidden): the scheduler's numbers for docs/benchmarks.md. Build with
/// `-c release`. Each row is measured `repetitions` times after warm-up; the table shows the median
/// and the 10th–90th percentile spread.
struct BenchScheduler: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-scheduler", abstract: "Measure context switch, startup, job throughput and fan-out.",
        shouldDisplay: false)

    @Option(help: "Measured repetitions per row (after warm-up).")
    var repetitions = 21

    @Option(help: "Worker threads for the throughput rows (default: one per CPU).")
    var workers: Int?

    @Option(help: "Only the rows whose name contains this text.")
    var only: String?

    func run() throws {
        guard repetitions > 0 else { throw ValidationError("--repetitions must be positive") }
        var rows: [(name: String, unit: String, warmUp: Int, body: () throws -> Double)] = [
            ("switch, raw fs_jump_context from Swift", "ns/switch", 3, { rawSwitch(roundTrips: 2_000_000, annotated: false) }),
            ("switch, fs_switch_context (scheduler's path)", "ns/switch", 3, { rawSwitch(roundTrips: 2_000_000, annotated: true) }),
            ("yield round trip / 2 (job <-> worker loop)", "ns/switch", 3, { try yieldSwitch(yields: 200_000) }),
        ]
        for (name, config) in startupConfigs() {
            rows.append(("startup to first job done: \(name)", "us", 3, { try startup(config) }))
        }
        rows.append(("empty jobs, 1M submitted as a batch from a thread", "ns/job", 1, { try emptyJobs(1_000_000) }))
        rows.append(("fan-out: 1 job spawns 10,000 and waits", "us", 3, { try fanOut(10_000) }))
        print("cpus: \(try CPUTopology.current().cpus.count), repetitions: \(repetitions)")
        let selected = rows.filter { only.map($0.name.contains) ?? true }
        let width = selected.map(\.name.count).max() ?? 0
        for row in selected {
            let summary = try measure(warmUp: row.warmUp, row.body)
            print(row.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + summary.formatted + " " + row.unit)
        }
    }

    private func measure(warmUp: Int = 3, _ body: () throws -> Double) rethrows -> Summary {
        for _ in 0..<warmUp { _ = try body() }
        return Summary(try (0..<repetitions).map { _ in try body() })
    }

    /// Ping-pong between this thread and a fiber; returns ns per switch (round trip / 2).
    private func rawSwitch(roundTrips: Int, annotated: Bool) -> Double {
        let stack = UnsafeMutableRawPointer.allocate(byteCount: 64 << 10, alignment: 16)
        defer { stack.deallocate() }
        var transfer = fs_jump_context(fs_make_context(stack + (64 << 10), 64 << 10, pingPong), nil)
        let start = monotonicNanoseconds()
        if annotated {
            var target = fs_switch_target(tsan_fiber: nil, stack_bottom: UnsafeRawPointer(stack), stack_size: 64 << 10)
            for _ in 0..<roundTrips { transfer = fs_switch_context(transfer.from, nil, &target) }
        } else {
            for _ in 0..<roundTrips { transfer = fs_jump_context(transfer.from, nil) }
        }
        return Double(monotonicNanoseconds() - start) / Double(2 * roundTrips)
    }

    /// One worker, one job that yields `yields` times; ns per switch (each yield is two switches).
    private func yieldSwitch(yields: Int) throws -> Double {
        var config = FiberConfig()
        config.workerCount = 1
        config.initialPoolSize = 1
        config.targetPoolSize = 1
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        let elapsed = try scheduler.submit { () -> UInt64 in
            let start = monotonicNanoseconds()
            for _ in 0..<yields { FiberScheduler.yield() }
            return monotonicNanoseconds() - start
        }.wait()
        return Double(elapsed) / Double(2 * yields)
    }

    /// 2 workers x 16 fibers x 512 KiB (the defaults otherwise), eager 128, and prefault at startup.
    private func startupConfigs() -> [(String, FiberConfig)] {
        var lazy = FiberConfig()
        lazy.workerCount = 2
        var eager = lazy
        eager.initialPoolSize = 128
        var prefaulted = lazy
        prefaulted.prefetchPages = .populate
        prefaulted.prefaultInitialPool = true
        return [
            ("2 workers x 16 fibers x 512 KiB", lazy), ("eager 2 x 128 fibers", eager),
            ("2 x 16, prefaulted (populate) at startup", prefaulted),
        ]
    }

    /// Microseconds from `init` to the first job's value back on this thread (shutdown not timed).
    private func startup(_ config: FiberConfig) throws -> Double {
        let start = monotonicNanoseconds()
        let scheduler = try FiberScheduler(config: config)
        try scheduler.submit {}.wait()
        let elapsed = monotonicNanoseconds() - start
        scheduler.shutdown()
        return Double(elapsed) / 1000
    }

    private func throughputConfig() -> FiberConfig {
        var config = FiberConfig()
        config.workerCount = workers
        config.stackSize = 64 << 10
        return config
    }

    /// ns per empty job: `count` jobs submitted as one batch from this thread and waited for.
    private func emptyJobs(_ count: Int) throws -> Double {
        let scheduler = try FiberScheduler(config: throughputConfig())
        defer { scheduler.shutdown() }
        let jobs = [@Sendable () throws -> Void](repeating: {}, count: count)
        let start = monotonicNanoseconds()
        try scheduler.submit(batch: jobs).wait()
        return Double(monotonicNanoseconds() - start) / Double(count)
    }

    /// Microseconds for one job to spawn `count` empty jobs and wait for them (its fiber suspends).
    private func fanOut(_ count: Int) throws -> Double {
        let scheduler = try FiberScheduler(config: throughputConfig())
        defer { scheduler.shutdown() }
        let elapsed = try scheduler.submit { () throws -> UInt64 in
            let start = monotonicNanoseconds()
            try FiberScheduler.current!.submit(batch: [@Sendable () throws -> Void](repeating: {}, count: count)).wait()
            return monotonicNanoseconds() - start
        }.wait()
        return Double(elapsed) / 1000
    }
}

/// Median and 10th–90th percentiles of a set of measurements.
struct Summary {
    let median: Double
    let low: Double
    let high: Double

    init(_ values: [Double]) {
        let sorted = values.sorted()
        func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))] }
        median = percentile(0.5)
        low = percentile(0.1)
        high = percentile(0.9)
    }

    var formatted: String {
        func format(_ value: Double) -> String {
            let digits = value < 10 ? 2 : value < 100 ? 1 : 0
            let scale = [1.0, 10, 100][digits]
            return String(Double((value * scale).rounded()) / scale)
        }
        return "\(format(median)) [\(format(low))–\(format(high))]"
    }
}

/// Switches back to whoever resumed it, forever (the benchmark's partner fiber).
private let pingPong: fs_entry = { transfer in
    var transfer = transfer
    while true { transfer = fs_jump_context(transfer.from, nil) }
}

/// CLOCK_MONOTONIC in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
