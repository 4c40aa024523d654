import ArgumentParser
import Glibc

/// The `fiberstacks` tool: what this machine offers, and proof that our stacks behave on it.
@main
struct FiberStacksCommand: ParsableCommand {
    /// The package's version: `fiberstacks --version`, and `tool_version` in every JSON report.
    package static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "fiberstacks",
        abstract: "Fiber stack memory for Linux: inspect the machine and verify guarded stacks on it.",
        discussion: """
            Start with `fiberstacks doctor`, then `fiberstacks verify`.

            Exit codes:
              0   success
              1   a check failed (verify), or a target was missed (bench --check)
              64  a usage error: an unknown command or flag, or a value out of its range
              70  an internal error (the message names what failed)
            """,
        version: version,
        subcommands: [
            Doctor.self, Verify.self, Bench.self, Frames.self, NUMACheck.self, OverflowChild.self,
        ])

    /// Runs the command and maps every outcome to the exit codes in the discussion above.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))  // --help, --version, or a bare `fiberstacks`
                Glibc.exit(0)
            }
            if let exit = error as? ExitCode { Glibc.exit(exit.rawValue) }
            FileStream.standardError.write(fullMessage(for: error) + "\n")
            Glibc.exit(code == .validationFailure ? ExitCode.validationFailure.rawValue : internalError)
        }
    }

    /// EX_SOFTWARE from sysexits.h.
    static let internalError: Int32 = 70
}

/// Unbuffered writes to a standard stream.
enum FileStream {
    case standardOutput, standardError

    func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(self == .standardOutput ? 1 : 2, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }
}
