import ArgumentParser
import Glibc
import StackDiagnostics

/// The `fiberstacks` tool: what this machine offers, and proof that our stacks behave on it.
@main
struct FiberStacksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fiberstacks",
        abstract: "Fiber stack memory for Linux: inspect the machine and verify guarded stacks on it.",
        discussion: """
            Start with `fiberstacks doctor`, then `fiberstacks verify`.

            Exit codes:
              0   success
              1   a check failed (verify), or a target was missed (bench --check)
              64  a usage error: an unknown command or flag, or a value out of its range
              70  an internal error, or output that could not be written (the message
                  names what failed)
            """,
        version: toolVersion,
        subcommands: [
            Doctor.self, Verify.self, Bench.self, Frames.self, NUMACheck.self, OverflowChild.self, AddressSpaceChild.self,
        ])

    /// Runs the command and maps every outcome to the exit codes in the discussion above.
    static func main() { runMappingExitCodes() }
}
