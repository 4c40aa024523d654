import ArgumentParser
import Glibc

extension ParsableCommand {
    /// Parses the arguments and runs the command; every outcome becomes an exit code: 0 (also `--help`,
    /// `--version`, a bare command printing usage), the command's own `ExitCode`, 64 for a usage error,
    /// and 70 (EX_SOFTWARE) for any other error, printed with its cause.
    static func runMappingExitCodes() -> Never {
        do {
            var command = try parseAsRoot()
            try command.run()
            Glibc.exit(0)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            if let exit = error as? ExitCode { Glibc.exit(exit.rawValue) }
            FileStream.standardError.write(fullMessage(for: error) + "\n")
            Glibc.exit(code == .validationFailure ? ExitCode.validationFailure.rawValue : 70)
        }
    }
}
