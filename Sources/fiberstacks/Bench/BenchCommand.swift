import ArgumentParser
import Foundation
import Logging
import StackAllocators

/// The logger benchmarks hand to the library: warnings only.
let benchLogger: Logger = {
    var logger = Logger(label: "fiberstacks.bench")
    logger.logLevel = .warning
    return logger
}()

/// `fiberstacks bench`: every benchmark section, then the peers, then ours/peer ratios and the targets.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark stacks, pools, prefault, switches, the scheduler, TLB, NUMA and capacity, next to "
            + "the peers in the same run (use a release build; see docs/benchmarks.md).")

    @Flag(help: "Write the whole report as JSON to standard output.")
    var json = false

    @Option(help: "Also write the JSON report to this file (with the table on standard output).")
    var output: String?

    @Flag(help: "Tiny counts: a smoke test of every section.")
    var quick = false

    @Option(help: "Repetitions per figure (after warm-up).")
    var reps = 15

    @Option(
        name: .customLong("section"),
        help: "Run only this section (repeatable): \(BenchSection.allCases.map(\.rawValue).joined(separator: ", ")).")
    var sections: [BenchSection] = []

    @Option(help: "The peer harness; build it with scripts/build-peers.")
    var peers = "scripts/peers/build/peers"

    @Option(name: .customLong("capacity-limit"), help: "Most stacks the capacity section makes (--quick: 1,000).")
    var capacityLimit = 1_000_000

    @Option(name: .customLong("capacity-seconds"), help: "Time bound of the capacity section, in seconds.")
    var capacitySeconds = 20.0

    func validate() throws {
        guard reps > 0 else { throw ValidationError("--reps must be positive") }
        guard capacityLimit > 0, capacitySeconds > 0 else {
            throw ValidationError("--capacity-limit and --capacity-seconds must be positive")
        }
    }

    func run() throws {
        let started = nanoseconds()
        let machine = BenchMachine.current()
        let recorder = BenchRecorder(
            scale: BenchScale(reps: quick ? 3 : reps, warmups: quick ? 1 : 2, quick: quick),
            capacityLimit: capacityLimit, capacitySeconds: capacitySeconds)
        let selected = BenchSection.allCases.filter { sections.isEmpty || sections.contains($0) }
        for section in selected {
            let start = nanoseconds()
            try section.run(recorder)
            FileStream.standardError.write(
                "bench: \(section.rawValue) done in \(String(format: "%.1f", Double(nanoseconds() - start) / 1e9)) s\n")
        }
        var peerReport: Peers.Report?
        var peersSkipped: String?
        if selected.contains(where: \.hasPeerFigures) {
            (peerReport, peersSkipped) = Peers.run(path: peers, quick: quick)
        } else {
            peersSkipped = "no selected section is compared with the peers"
        }
        let peerResults = peerReport?.results ?? []
        let report = BenchReport(
            command: (["fiberstacks"] + CommandLine.arguments.dropFirst()).joined(separator: " "), machine: machine,
            quick: quick, reps: recorder.scale.reps, sections: selected.map(\.rawValue), counters: Self.counters(),
            results: recorder.results, skipped: recorder.skipped, peers: peerReport?.results, peersSkipped: peersSkipped,
            ratios: RatioPlan.ratios(ours: recorder.results, peers: peerResults),
            targets: RatioPlan.boundChecks(ours: recorder.results), seconds: Double(nanoseconds() - started) / 1e9,
            loadAverageEnd: BenchMachine.loadAverage())
        let encoded = try encodeJSON(report)
        if let output {
            do {
                try (encoded + "\n").write(toFile: output, atomically: true, encoding: .utf8)
            } catch {
                throw BenchFailure("cannot write the report to \(output): \(error)")
            }
        }
        if json {
            print(encoded)
        } else {
            report.printTable()
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
