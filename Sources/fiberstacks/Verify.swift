import ArgumentParser
import StackAllocators
import StackDiagnostics

/// `fiberstacks verify`: allocates stacks with every allocator this machine supports and proves, with
/// the kernel's own answers, that guards fault, prefault did what it says, and release unmaps.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prove guards, prefault, placement and release on this machine.",
        discussion: """
            Every check ends PASS, FAIL or SKIP; a skip names the capability this machine lacks. \
            Exit status: 0 when no check failed, 1 when one did (a timeout is a failure), 64 for a usage error.
            """)

    @Flag(help: "Print JSON (schema_version, tool_version, summary, checks) instead of a table.")
    var json = false

    @Option(
        name: .customLong("require"),
        help: ArgumentHelp(
            "Fail, rather than skip, the checks that need one of these capabilities (comma-separated): \(Capability.names).",
            valueName: "capability,..."))
    var requireList: [String] = []

    @Flag(help: "Allow checks that change the machine: fill a NUMA node's free memory, resize huge page pools (root).")
    var allowMachineChanges = false

    @Option(help: .hidden)
    var millionStacks = CapacityCheck.defaultStacks

    /// The capabilities named by `--require`.
    var required: Set<Capability> { Set(requireList.flatMap { $0.split(separator: ",") }.compactMap { Capability(rawValue: String($0)) }) }

    func validate() throws {
        for name in requireList.flatMap({ $0.split(separator: ",", omittingEmptySubsequences: false) }) where Capability(rawValue: String(name)) == nil {
            throw ValidationError("--require: unknown capability '\(name)'; valid capabilities: \(Capability.names)")
        }
        guard (1_000...CapacityCheck.defaultStacks).contains(millionStacks) else {
            throw ValidationError("--million-stacks must lie in 1000...\(CapacityCheck.defaultStacks)")
        }
    }

    func run() throws {
        let output = VerifyOutput(json: json, required: required)
        let watchdog = try Watchdog { output.finishAfterTimeout($0) }
        watchdog.arm(name: "setup", allocator: "verify", timeLimit: VerifyReport.defaultTimeLimit)
        var report = VerifyReport()
        report.required = required
        report.observer = VerifyObserver(
            willStart: { watchdog.arm(name: $0, allocator: $1, timeLimit: $2) },
            didEnd: { watchdog.disarm(); output.print($0) })
        MmapChecks.run(into: &report)
        NUMAChecks.run(into: &report)
        SlabChecks.run(into: &report)
        PooledChecks.run(into: &report)
        HugePageChecks.run(into: &report)
        OverflowChecks.run(into: &report)
        GuardFaultChecks.run(into: &report)
        CapacityCheck.run(stacks: millionStacks, into: &report)
        SchedulerChecks.run(into: &report)
        MultiNodeVerify.run(allowMachineChanges: allowMachineChanges, into: &report)
        try output.finish()
        if !report.passed { throw ExitCode(1) }
    }
}
