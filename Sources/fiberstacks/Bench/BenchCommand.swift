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

/// `fiberstacks bench`: every benchmark section, then the peers, then ours/peer ratios.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark stack allocation, prefault and the peers in one run (use a release build).")

    @Flag(help: "Write the whole report as JSON to standard output.")
    var json = false

    @Flag(help: "Tiny counts: a smoke test of every section.")
    var quick = false

    @Option(help: "Repetitions per figure (after warm-up).")
    var reps = 15

    @Option(help: "The peer harness; build it with scripts/build-peers.")
    var peers = "scripts/peers/build/peers"

    func validate() throws {
        guard reps > 0 else { throw ValidationError("--reps must be positive") }
    }

    func run() throws {
        let scale = BenchScale(reps: quick ? 3 : reps, warmups: quick ? 1 : 2, quick: quick)
        let results = try StackBenchmarks.run(scale)
        let (peerReport, peerSkip) = Peers.run(path: peers, quick: quick)
        let report = BenchReport(
            machine: BenchMachine.current(), quick: quick, results: results, peers: peerReport?.results,
            peersSkipped: peerSkip, ratios: RatioPlan.ratios(ours: results, peers: peerReport?.results ?? []))
        if json {
            print(try encodeJSON(report))
        } else {
            report.printTable()
        }
    }
}

/// The machine a report was measured on.
struct BenchMachine: Codable {
    let cpu: String
    let kernel: String
    let cores: Int

    static func current() -> BenchMachine {
        let cpuinfo = (try? SystemFile.read("/proc/cpuinfo")) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown"
        return BenchMachine(cpu: model, kernel: kernelRelease, cores: ProcessInfo.processInfo.activeProcessorCount)
    }
}

/// Everything one `bench` run measured.
struct BenchReport: Codable {
    let suite = "fiberstacks"
    let machine: BenchMachine
    let quick: Bool
    let results: [BenchResult]
    let peers: [BenchResult]?
    let peersSkipped: String?
    let ratios: [BenchRatio]

    enum CodingKeys: String, CodingKey {
        case suite, machine, quick, results, peers, ratios
        case peersSkipped = "peers_skipped"
    }

    func printTable() {
        print("machine: \(machine.cpu), \(machine.cores) cores, Linux \(machine.kernel)")
        func rows(_ title: String, _ results: [BenchResult]) {
            print("\n\(title)")
            var table = [("section/name", "params", "median", "p10..p90", "extra")]
            for result in results {
                let params = result.params.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                let extra = (result.extra ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\(format($0.value))" }.joined(separator: " ")
                table.append(("\(result.section)/\(result.name)", params, "\(format(result.median)) \(result.unit)",
                              "\(format(result.p10))..\(format(result.p90))", extra))
            }
            let widths = [table.map(\.0.count).max()!, table.map(\.1.count).max()!, table.map(\.2.count).max()!, table.map(\.3.count).max()!]
            for row in table {
                print([row.0.padding(toLength: widths[0], withPad: " ", startingAt: 0),
                       row.1.padding(toLength: widths[1], withPad: " ", startingAt: 0),
                       row.2.padding(toLength: widths[2], withPad: " ", startingAt: 0),
                       row.3.padding(toLength: widths[3], withPad: " ", startingAt: 0), row.4].joined(separator: "  "))
            }
        }
        rows("ours", results)
        if let peers { rows("peers (same run)", peers) } else { print("\npeers skipped: \(peersSkipped ?? "")") }
        if !ratios.isEmpty {
            print("\nratios (ours/peer median; < 1: ours faster)")
            for ratio in ratios { print("  \(ratio.ours) / \(ratio.peer) = \(format(ratio.ratio)) (target \(ratio.target))") }
        }
    }
}

/// Three significant decimals for small numbers, none for large ones.
func format(_ value: Double) -> String {
    value >= 100 ? String(Int(value.rounded())) : String(format: "%.3g", value)
}
