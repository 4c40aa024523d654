import ArgumentParser
import Foundation
import Glibc
@_spi(Benchmarks) import GuardPages
import Logging
import StackAllocators
@_spi(Benchmarks) import StackDiagnostics

/// The logger benchmarks hand to the library: warnings only.
let benchLogger: Logger = {
    var logger = Logger(label: "fiberstacks.bench")
    logger.logLevel = .warning
    return logger
}()

/// `fiberstacks-bench` (what `fiberstacks bench` runs): every benchmark section, each figure alternating
/// with its peers within every repetition, then ours/peer ratios and the targets.
@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fiberstacks bench",
        abstract: "Benchmark stacks, pools, prefault, switches, the scheduler, TLB, NUMA and capacity, next to "
            + "their peers in the same process (use a release build; see docs/benchmarks.md).",
        discussion: """
            Exit codes: 0 success; 1 a target was missed (--check); 64 a usage error; 70 a benchmark failed, or \
            the output could not be written.
            """)

    @Flag(help: "Write the whole report as JSON to standard output.")
    var json = false

    @Option(help: "Also write the JSON report to this file (with the table on standard output).")
    var output: String?

    @Flag(help: "Tiny counts: a smoke test of every section.")
    var quick = false

    @Option(parsing: .unconditional, help: "Repetitions per figure, after warm-up: \(describe(Bench.repsRange)) (default \(Bench.defaults.reps)).",
            transform: bounded(Bench.repsRange))
    var reps = Bench.defaults.reps

    @Option(
        name: .customLong("section"),
        help: "Run only this section (repeatable): \(BenchSection.allCases.map(\.rawValue).joined(separator: ", ")).")
    var sections: [BenchSection] = []

    @Option(help: "Also draw every ratio against its target as an SVG picture in this file.")
    var svg: String?

    @Option(
        name: .customLong("capacity-limit"), parsing: .unconditional,
        help: "Most stacks the capacity section makes: \(describe(Bench.capacityLimitRange)) (default \(Bench.defaults.capacityLimit); --quick: at most 1000).",
        transform: bounded(Bench.capacityLimitRange))
    var capacityLimit = Bench.defaults.capacityLimit

    @Option(
        name: .customLong("capacity-seconds"), parsing: .unconditional,
        help: "Time bound of the capacity section, in seconds: \(describe(Bench.capacitySecondsRange)) (default \(format(Bench.defaults.capacitySeconds))).",
        transform: bounded(Bench.capacitySecondsRange))
    var capacitySeconds = Bench.defaults.capacitySeconds

    @Flag(help: "Exit 1 unless every target and ratio is met (one whose figure was not measured counts as missed).")
    var check = false

    /// The defaults of the numeric flags, stated in their help.
    static let defaults = (reps: 15, capacityLimit: 1_000_000, capacitySeconds: 20.0)
    /// Repetitions: a run of every section at the top of the range takes hours, not days.
    static let repsRange = 1...1_000
    /// Stacks: at the top, the page tables of the live stacks reach about 1 GiB.
    static let capacityLimitRange = 1...4_000_000
    static let capacitySecondsRange = 0.1...600.0

    func run() throws {
        let started = nanoseconds()
        // Before any benchmark: a path the report cannot be written to is a usage error that costs nothing.
        if let output, let svg,
            URL(fileURLWithPath: output).resolvingSymlinksInPath() == URL(fileURLWithPath: svg).resolvingSymlinksInPath()
        {
            throw ValidationError("--output and --svg name the same file, \(svg): the picture would replace the report; give two paths")
        }
        let outputFile = try output.map { path throws(ValidationError) in try ReportFile(path: path, flag: "--output") }
        let svgFile = try svg.map { path throws(ValidationError) in try ReportFile(path: path, flag: "--svg") }
        let machine = BenchMachine.current()
        let recorder = BenchRecorder(
            scale: BenchScale(reps: quick ? 3 : reps, warmups: quick ? 1 : 2, quick: quick),
            capacityLimit: capacityLimit, capacitySeconds: capacitySeconds)
        let selected = BenchSection.allCases.filter { sections.isEmpty || sections.contains($0) }
        for section in selected {
            let start = nanoseconds()
            FileStream.standardError.write("bench: \(section.rawValue) \(section.progressDetail(recorder))...\n")
            try section.run(recorder)
            FileStream.standardError.write(
                "bench: \(section.rawValue) done in \(String(format: "%.1f", Double(nanoseconds() - start) / 1e9)) s\n")
        }
        let report = BenchReport(
            command: (["fiberstacks bench"] + CommandLine.arguments.dropFirst()).joined(separator: " "), machine: machine,
            quick: quick, reps: recorder.scale.reps, sections: selected.map(\.rawValue), counters: Self.counters(),
            results: recorder.results, skipped: recorder.skipped, peers: recorder.peerResults,
            ratios: RatioPlan.ratios(ours: recorder.results, peers: recorder.peerResults),
            targets: RatioPlan.boundChecks(ours: recorder.results), seconds: Double(nanoseconds() - started) / 1e9,
            loadAverageEnd: BenchMachine.loadAverage(), date: BenchMachine.utcNow())
        let encoded = try encodeJSON(ReportEnvelope(schemaVersion: BenchReport.schemaVersion, report: report))
        // Standard output first: a report that cannot be written to --output is still shown.
        if json {
            FileStream.standardOutput.writeLine(encoded)
        } else {
            report.printTable()
        }
        try outputFile?.write(encoded + "\n")
        try svgFile?.write(BenchChart(report: report).svg())
        if check, report.missed > 0 {
            FileStream.standardError.write("bench: \(report.missed) targets missed or not run (--check)\n")
            throw ExitCode(1)
        }
    }

    /// Whether perf_event_open offers each counter the benchmarks read, on this thread.
    static func counters() -> [String: String] {
        let keys: [(String, PerfCounter.Event)] = [("page_faults", .pageFaults), ("dtlb_read_misses", .dataTLBReadMisses)]
        return Dictionary(uniqueKeysWithValues: keys.map { key, event in
            (key, PerfCounter.unavailability(of: event).map { "not available: \($0)" } ?? "available")
        })
    }
}

extension Bench {
    /// Runs the command: a usage error exits 64, a benchmark that fails 70 (EX_SOFTWARE), with the cause.
    static func main() { runMappingExitCodes() }
}
