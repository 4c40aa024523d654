import Glibc

/// One benchmark figure in the shape the peer harness prints (scripts/peers/peers.cpp), so ours and
/// theirs can be compared field by field.
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

    enum CodingKeys: String, CodingKey {
        case section, name, params, unit, median, min, p10, p90, max, reps, extra
        case opsPerRep = "ops_per_rep"
    }

    /// Summarises per-operation samples (nanoseconds, or whatever `unit` says).
    init(section: String, name: String, params: [String: Int] = [:], unit: String = "ns",
         samples: [Double], opsPerRep: Int, extra: [String: Double]? = nil) {
        let sorted = samples.sorted()
        func quantile(_ q: Double) -> Double {
            sorted.isEmpty ? 0 : sorted[Swift.min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))]
        }
        self.section = section
        self.name = name
        self.params = params
        self.unit = unit
        self.median = quantile(0.5)
        self.min = sorted.first ?? 0
        self.p10 = quantile(0.1)
        self.p90 = quantile(0.9)
        self.max = sorted.last ?? 0
        self.reps = sorted.count
        self.opsPerRep = opsPerRep
        self.extra = extra
    }
}

/// How many repetitions and operations a section runs: full, or tiny for smoke tests.
struct BenchScale {
    let reps: Int
    let warmups: Int
    let quick: Bool

    /// `full` operations per repetition normally, `quick` under `--quick`.
    func ops(_ full: Int, quick small: Int) -> Int { quick ? small : full }
}

/// Monotonic nanoseconds.
@inline(__always)
func nanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// Runs `body` (which performs `ops` operations and returns the nanoseconds it chose to time) for
/// warm-up and measured repetitions; returns nanoseconds per operation, one sample per repetition.
func measure(_ scale: BenchScale, ops: Int, _ body: () throws -> UInt64) rethrows -> [Double] {
    for _ in 0..<scale.warmups { _ = try body() }
    return try (0..<scale.reps).map { _ in Double(try body()) / Double(ops) }
}

/// Times `ops` calls of `operation` as one repetition.
func timeLoop(_ ops: Int, _ operation: () throws -> Void) rethrows -> UInt64 {
    let start = nanoseconds()
    for _ in 0..<ops { try operation() }
    return nanoseconds() - start
}
