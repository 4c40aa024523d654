import ArgumentParser
import StackAllocators
import StackDiagnostics

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
            FileStream.standardOutput.writeLine(try encodeJSON(report))
        } else {
            for check in report.checks {
                let counts = check.counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(
                    separator: " ")
                FileStream.standardOutput.writeLine(
                    check.status.rawValue.uppercased() + "  " + check.name + "  " + check.detail
                        + (check.capability.map { " [\($0.rawValue)]" } ?? "") + (counts.isEmpty ? "" : "  [\(counts)]"))
            }
            let count = { (status: CheckStatus) in report.checks.filter { $0.status == status }.count }
            FileStream.standardOutput.writeLine("\(count(.pass)) passed, \(count(.fail)) failed, \(count(.skip)) skipped")
        }
        if !report.passed { throw ExitCode(1) }
    }
}
