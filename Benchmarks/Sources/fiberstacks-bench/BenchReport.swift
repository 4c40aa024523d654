import Foundation

/// Everything one `bench` run measured, in the JSON `fiberstacks bench --json` writes.
struct BenchReport: Encodable {
    var suite = "fiberstacks"
    let command: String
    let machine: BenchMachine
    let quick: Bool
    let reps: Int
    let sections: [String]
    /// Per perf counter (`page_faults`, `dtlb_read_misses`): "available", or "not available: " and why.
    let counters: [String: String]
    let results: [BenchResult]
    let skipped: [BenchSkip]
    /// The peers' figures, each measured alternating with ours.
    let peers: [BenchResult]
    let ratios: [BenchRatio]
    let targets: [BenchTargetCheck]
    let seconds: Double
    /// The load averages when the run ended.
    let loadAverageEnd: [Double]
    /// When the run ended, UTC ("2026-11-30 08:40").
    let date: String

    enum CodingKeys: String, CodingKey {
        case suite, command, machine, quick, reps, sections, counters, results, skipped, peers, ratios, targets, seconds, date
        case loadAverageEnd = "load_average_end"
    }

    /// The shape of the JSON (`schema_version`): raised when a key changes meaning or disappears.
    static let schemaVersion = 2

    /// Targets and ratios not met, including those not evaluated.
    var missed: Int { ratios.filter { !$0.met }.count + targets.filter { !$0.met }.count }

    /// Targets and ratios this run could not judge.
    var notEvaluated: Int {
        ratios.filter { $0.status == .notEvaluated }.count + targets.filter { $0.status == .notEvaluated }.count
    }

    /// The report as aligned text tables.
    func printTable() { FileStream.standardOutput.write(tableLines().joined(separator: "\n") + "\n") }

    private func tableLines() -> [String] {
        var lines = [
            "fiberstacks bench (\(command)): \(machine.build) build, \(String(format: "%.0f", seconds)) s",
            "machine: \(machine.cpu), \(machine.cores) cores, \(machine.virtualization), Linux \(machine.kernel), "
                + "THP \(machine.transparentHugePages), \(machine.hugePagesFree) free huge pages, lightweight guards "
                + "\(machine.lightweightGuards ? "yes" : "no")",
            "load average: \(machine.loadAverage.map(format).joined(separator: " ")) at the start, "
                + "\(loadAverageEnd.map(format).joined(separator: " ")) at the end",
            "perf counters: " + counters.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "; "),
            "median and p10..p90 over \(reps) repetitions after warm-up; unit per operation",
        ]
        for section in sections {
            lines += Self.rows("\n\(section)", results.filter { $0.section == section })
        }
        lines += Self.rows("\npeers (each measured alternating with ours)", peers)
        if !skipped.isEmpty {
            lines.append("\nskipped")
            lines += skipped.map { "  \($0.section)/\($0.name): \($0.reason)" }
        }
        if !ratios.isEmpty {
            lines.append("\nratios (ours / versus, medians; below 1: ours faster)")
            lines += ratios.map { ratio in
                "  \(ratio.status.marker) \(ratio.id): \(ratio.ours) / \(ratio.versus) = \(ratio.ratio.map(format) ?? "?") "
                    + "(at most \(format(ratio.maxRatio)): \(ratio.target))"
            }
        }
        if !targets.isEmpty {
            lines.append("\ntargets")
            lines += targets.map { check in
                "  \(check.status.marker) \(check.id): \(check.figure) = \(check.value.map(format) ?? "?") \(check.unit ?? check.metric) "
                    + "(at most \(format(check.maxValue)): \(check.target))"
            }
        }
        if notEvaluated > 0 {
            lines.append("\n\(notEvaluated) targets NOT RUN: this run did not measure a figure they compare "
                + "(a section not selected, a skip, or no peers)")
        }
        return lines
    }

    /// One table: label, median, spread, repetitions x operations, extra figures.
    static func rows(_ title: String, _ results: [BenchResult]) -> [String] {
        guard !results.isEmpty else { return [] }
        let table = results.map { result in
            [
                result.label, "\(format(result.median)) \(result.unit)", "\(format(result.p10))..\(format(result.p90))",
                "\(result.reps)x\(result.opsPerRep)",
                (result.extra ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\(format($0.value))" }
                    .joined(separator: " "),
            ]
        }
        let widths = (0..<4).map { column in table.map { $0[column].count }.max() ?? 0 }
        return [title] + table.map { row in
            let cells = (0..<4).map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
            return "  " + (cells + [row[4]]).joined(separator: "  ")
        }
    }
}
