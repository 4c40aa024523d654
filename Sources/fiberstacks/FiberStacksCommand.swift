import ArgumentParser
import Glibc

/// The `fiberstacks` tool: what this machine offers, and proof that our stacks behave on it.
@main
struct FiberStacksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fiberstacks",
        abstract: "Fiber stack memory for Linux: inspect the machine and verify guarded stacks on it.",
        subcommands: [
            Doctor.self, Verify.self, Bench.self, NUMACheck.self, OverflowChild.self, AddressSpaceChild.self,
        ],
        defaultSubcommand: Verify.self)

    /// Exit codes: 0 success, 1 a check failed, 2 bad arguments (ArgumentParser's own code is 64).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let exit as ExitCode {
            Glibc.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            FileStream.standardError.write(fullMessage(for: error) + "\n")
            Glibc.exit(2)
        }
    }
}

/// Unbuffered writes to a standard stream.
enum FileStream {
    case standardError

    func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }
}
