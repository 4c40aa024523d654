import ArgumentParser
import StackAllocators

/// `fiberstacks numa-check` (hidden): the multi-node placement checks, run inside scripts/numa-vm guests
/// by Tests/NUMATests. Prints one JSON object (`--json`) or a table; exit 0 when no check failed (skips name the capability they lack).
struct NUMACheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "numa-check",
        abstract: "Check NUMA placement on every node of this machine (run in scripts/numa-vm; see docs/numa.md).",
        shouldDisplay: false)

    @Flag(help: "Print {\"passed\", \"kernel\", \"topology\", \"checks\": [{\"name\", \"status\", \"detail\", \"counts\", \"capability\"}]} as JSON instead of a table.")
    var json = false

    @Flag(help: "The machine is disposable (a scripts/numa-vm guest): fill a node's free memory, resize huge page pools.")
    var disposableMachine = false

    func run() throws {
        var report = NUMACheckReport()
        MultiNodeChecks.run(disposable: disposableMachine, into: &report)
        if json {
            print(try encodeJSON(report))
        } else {
            for check in report.checks {
                let counts = check.counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(
                    separator: " ")
                print(
                    check.status.rawValue.uppercased() + "  " + check.name + "  " + check.detail
                        + (check.capability.map { " [\($0.rawValue)]" } ?? "") + (counts.isEmpty ? "" : "  [\(counts)]"))
            }
            let count = { (status: CheckStatus) in report.checks.filter { $0.status == status }.count }
            print("\(count(.pass)) passed, \(count(.fail)) failed, \(count(.skip)) skipped")
        }
        if !report.passed { throw ExitCode(1) }
    }
}

/// One multi-node check: its name, how it ended, what it saw, and the page counts behind it.
struct NUMACheckResult: Codable {
    let name: String
    let status: CheckStatus
    let detail: String
    let counts: [String: Int]
    /// What a skipped check lacked.
    let capability: Capability?
}

/// Everything `numa-check` found, with the topology it ran on.
struct NUMACheckReport: Codable {
    /// No check failed (skips allowed).
    var passed: Bool { !checks.contains { $0.status == .fail } }
    var kernel = kernelRelease
    var topology: NUMATopology?
    private(set) var checks: [NUMACheckResult] = []

    /// Records a check.
    mutating func add(_ name: String, _ passed: Bool, _ detail: String, counts: [String: Int] = [:]) {
        checks.append(NUMACheckResult(name: name, status: passed ? .pass : .fail, detail: detail, counts: counts, capability: nil))
    }

    /// Records a check that could not run for lack of `capability`.
    mutating func skip(_ name: String, lacking capability: Capability, _ reason: String) {
        checks.append(NUMACheckResult(name: name, status: .skip, detail: reason, counts: [:], capability: capability))
    }

    /// Runs `body`, recording its result, or a failed check naming the error it threw.
    mutating func check(_ name: String, _ body: () throws -> (Bool, String, [String: Int])) {
        do {
            let (passed, detail, counts) = try body()
            add(name, passed, detail, counts: counts)
        } catch let skipped as CheckSkipped {
            skip(name, lacking: skipped.capability, skipped.reason)
        } catch {
            add(name, false, "error: \(error)")
        }
    }

    enum CodingKeys: String, CodingKey { case passed, kernel, topology, checks }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(passed, forKey: .passed)
        try container.encode(kernel, forKey: .kernel)
        try container.encodeIfPresent(topology, forKey: .topology)
        try container.encode(checks, forKey: .checks)
    }

    init() {}

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        kernel = try container.decode(String.self, forKey: .kernel)
        topology = try container.decodeIfPresent(NUMATopology.self, forKey: .topology)
        checks = try container.decode([NUMACheckResult].self, forKey: .checks)
    }
}

extension PlacementReport {
    /// The figures a check reports: pages, present, notPresent, and `nodeN` per node.
    var counts: [String: Int] {
        var counts = ["pages": pages, "present": present, "notPresent": notPresent]
        for (node, count) in pagesPerNode { counts["node\(node)"] = count }
        return counts
    }
}
