import Foundation
import Glibc
import StackDiagnostics
import Synchronization

/// One benchmark figure, ours or a peer's, in one shape so the two can be compared field by field.
struct BenchResult: Codable {
    let section: String
    let name: String
    let params: [String: Int]
    let unit: String
    let median: Double
    let min: Double
    let p10: Double
    let p90: Double
    let max: Double
    let reps: Int
    let opsPerRep: Int
    var extra: [String: Double]?
    /// For a peer: what it could not be given the same as ours ("guard_size: 4096 vs 65536").
    var unmatched: [String]?

    enum CodingKeys: String, CodingKey {
        case section, name, params, unit, median, min, p10, p90, max, reps, extra, unmatched
        case opsPerRep = "ops_per_rep"
    }

    /// Summarises per-operation samples, one per repetition (nanoseconds, or whatever `unit` says).
    /// Percentiles interpolate linearly between order statistics, as the peer harness does.
    init(
        section: BenchSection, name: String, params: [String: Int] = [:], unit: String = "ns",
        samples: [Double], opsPerRep: Int, extra: [String: Double]? = nil, unmatched: [String]? = nil
    ) {
        let sorted = samples.sorted()
        self.section = section.rawValue
        self.name = name
        self.params = params
        self.unit = unit
        self.median = Self.quantile(sorted, 0.5)
        self.min = sorted.first ?? 0
        self.p10 = Self.quantile(sorted, 0.1)
        self.p90 = Self.quantile(sorted, 0.9)
        self.max = sorted.last ?? 0
        self.reps = sorted.count
        self.opsPerRep = opsPerRep
        self.extra = extra
        self.unmatched = unmatched
    }

    /// The `q` quantile of ascending `sorted` values, interpolated linearly (numpy's default); 0 when empty.
    static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let position = q * Double(sorted.count - 1)
        let low = Int(position)
        let high = Swift.min(low + 1, sorted.count - 1)
        return sorted[low] + (sorted[high] - sorted[low]) * (position - Double(low))
    }

    /// The median of unsorted `values`.
    static func median(_ values: [Double]) -> Double { quantile(values.sorted(), 0.5) }

    /// The same result with `extra` figures added.
    func withExtra(_ figures: [String: Double]) -> BenchResult {
        var copy = self
        copy.extra = (extra ?? [:]).merging(figures) { $1 }
        return copy
    }

    /// "section/name k=v ...", the label of this figure in tables and ratios.
    var label: String {
        let parameters = params.sorted { $0.key < $1.key }.map { "\($0.key)=\(formatParameter($0.value))" }
        return (["\(section)/\(name)"] + parameters).joined(separator: " ")
    }
}

/// How many repetitions and operations a section runs: full, or tiny for smoke tests.
struct BenchScale {
    let reps: Int
    let warmups: Int
    let quick: Bool

    /// `full` operations per repetition normally, `small` under `--quick`.
    func ops(_ full: Int, quick small: Int) -> Int { quick ? small : full }
}

/// Monotonic nanoseconds (or the nanoseconds of another `clock`, such as the thread's CPU time).
@inline(__always)
func nanoseconds(_ clock: clockid_t = CLOCK_MONOTONIC) -> UInt64 {
    var time = timespec()
    clock_gettime(clock, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// Runs `body` (which performs `ops` operations and returns the nanoseconds it chose to time) for
/// warm-up and measured repetitions; returns nanoseconds per operation, one sample per repetition.
func measure(_ scale: BenchScale, ops: Int, _ body: () throws -> UInt64) rethrows -> [Double] {
    try measureFigures(scale) { [Double(try body()) / Double(ops)] }[0]
}

/// Runs `body`, which measures several figures in one repetition and returns one value for each, for
/// warm-up and measured repetitions; returns one column of samples per figure. Figures measured in the
/// same repetition see the same outside load, so their ratios are fair on a shared machine.
func measureFigures(_ scale: BenchScale, _ body: () throws -> [Double]) rethrows -> [[Double]] {
    for _ in 0..<scale.warmups { _ = try body() }
    var columns: [[Double]] = []
    for _ in 0..<scale.reps {
        let values = try body()
        if columns.isEmpty { columns = Array(repeating: [], count: values.count) }
        for (index, value) in values.enumerated() { columns[index].append(value) }
    }
    return columns
}

/// Times `ops` calls of `operation` as one repetition.
func timeLoop(_ ops: Int, _ operation: () throws -> Void) rethrows -> UInt64 {
    let start = nanoseconds()
    for _ in 0..<ops { try operation() }
    return nanoseconds() - start
}

/// `value`, hidden from the optimizer.
@inline(never)
func opaque<T>(_ value: T) -> T { value }

/// Runs `body` on `count` new threads that start together (a spinning barrier), waits for them all,
/// and returns each thread's result; rethrows the first error any thread threw.
func onThreads(_ count: Int, _ body: @escaping @Sendable () throws -> Double) throws -> [Double] {
    let job = ThreadGroupJob(count: count, body: body)
    var threads: [pthread_t] = []
    for _ in 0..<count {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(job).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            Unmanaged<ThreadGroupJob>.fromOpaque(context!).takeRetainedValue().runOne()
            return nil
        }, context)
        guard created == 0 else {
            Unmanaged<ThreadGroupJob>.fromOpaque(context).release()
            job.abandon(count - threads.count)
            for thread in threads { pthread_join(thread, nil) }
            throw BenchFailure("pthread_create failed: errno \(created)")
        }
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
    return try job.results()
}

/// The shared state of `onThreads`: a start barrier, and one result slot per thread (each thread writes
/// only its own, and the caller reads them after joining; no lock, so ThreadSanitizer sees it all).
private final class ThreadGroupJob: @unchecked Sendable {
    let body: @Sendable () throws -> Double
    private let count: Int
    private let waiting: Atomic<Int>
    private let claimed = Atomic<Int>(0)
    private let slots: UnsafeMutablePointer<Result<Double, any Error>?>

    init(count: Int, body: @escaping @Sendable () throws -> Double) {
        self.body = body
        self.count = count
        waiting = Atomic(count)
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil, count: count)
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    func runOne() {
        let slot = claimed.wrappingAdd(1, ordering: .relaxed).oldValue
        waiting.subtract(1, ordering: .acquiringAndReleasing)
        while waiting.load(ordering: .acquiring) > 0 { sched_yield() }
        slots[slot] = Result { try body() }
    }

    /// Releases the barrier for threads that will never start.
    func abandon(_ missing: Int) { waiting.subtract(missing, ordering: .acquiringAndReleasing) }

    /// The results of the threads that ran (call after joining them all).
    func results() throws -> [Double] { try (0..<count).compactMap { try slots[$0]?.get() } }
}

/// A benchmark that could not run for a reason other than a missing capability.
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Three significant digits for small numbers, none for large ones.
func format(_ value: Double) -> String {
    value >= 100 ? String(Int(value.rounded())) : String(format: "%.3g", value)
}

/// A parameter as people read it: sizes as 64K, 2M; everything else as is.
func formatParameter(_ value: Int) -> String {
    if value >= 1 << 20, value % (1 << 20) == 0 { return "\(value >> 20)M" }
    if value >= 1 << 10, value % (1 << 10) == 0 { return "\(value >> 10)K" }
    return String(value)
}
