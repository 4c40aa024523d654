import ArgumentParser
import Glibc

extension ParsableCommand {
    /// Parses the arguments and runs the command; every outcome becomes an exit code: 0 (also `--help`,
    /// `--version`, a bare command printing usage), the command's own `ExitCode`, 64 for a usage error,
    /// and 70 (EX_SOFTWARE) for any other error, printed with its cause. Output that standard output lost
    /// turns a 0 into 70 (a 1 stays: the verdict holds) and is named on standard error (`FileStream`).
    static func runMappingExitCodes() -> Never {
        FileStream.occupyClosedDescriptors()
        // A reader that went away (`| head`) is output lost like any other: EPIPE, named, exit 70, not a
        // silent death by SIGPIPE. Children start with default signal actions (`ChildProcess`).
        signal(SIGPIPE, SIG_IGN)
        do {
            try checkHelpTopics()
            var command = try parseAsRoot()
            try command.run()
            exitNamingLostOutput(0)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                FileStream.standardOutput.writeLine(fullMessage(for: error))
                exitNamingLostOutput(0)
            }
            if let exit = error as? ExitCode { exitNamingLostOutput(exit.rawValue) }
            FileStream.standardError.writeLine(fullMessage(for: error))
            exitNamingLostOutput(code == .validationFailure ? ExitCode.validationFailure.rawValue : 70)
        }
    }

    /// `help TOPIC...`: each topic must be a subcommand (ArgumentParser prints the root's help for any
    /// other word and exits 0, as if the topic existed).
    private static func checkHelpTopics() throws {
        let arguments = CommandLine.arguments.dropFirst()
        guard arguments.first == "help" else { return }
        let names = configuration.subcommands.map { $0._commandName }
        let shown = configuration.subcommands.filter { $0.configuration.shouldDisplay }.map { $0._commandName }
        for topic in arguments.dropFirst() where !names.contains(topic) {
            throw ValidationError("help: unknown command '\(topic)'; commands: \(shown.joined(separator: ", "))")
        }
    }

    /// Exits with `code`, or with 70 when it is 0 and standard output lost some of what was written to it:
    /// a report that did not arrive is not a success. The loss is named either way.
    private static func exitNamingLostOutput(_ code: Int32) -> Never {
        guard let lost = FileStream.lostOutput else { Glibc.exit(code) }
        FileStream.standardError.writeLine(
            "\(configuration.commandName ?? "fiberstacks"): standard output: cannot write to it: \(lost); what it shows is incomplete")
        Glibc.exit(code == 0 ? 70 : code)
    }
}
