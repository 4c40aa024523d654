import Glibc
import StackAllocators

/// The `fiberstacks` executable run as a child process (posix_spawn) for the checks that need a process
/// to die: a child past its time limit is killed, and the check fails naming the command.
package enum SelfChild {
    /// The default time limit of one child, in seconds.
    package static let timeLimit = 30.0

    /// This executable when it is `fiberstacks`; otherwise (the checks run in-process by another program,
    /// such as a test bundle) the `fiberstacks` next to it.
    package static let executable: String = {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return "/proc/self/exe" }
        let path = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/"), path[path.index(after: slash)...] != "fiberstacks" else {
            return "/proc/self/exe"
        }
        let sibling = String(path[...slash]) + "fiberstacks"
        return access(sibling, X_OK) == 0 ? sibling : "/proc/self/exe"
    }()

    package static func run(_ arguments: [String], environment: [String: String] = [:], timeLimit: Double = timeLimit)
        throws -> ChildProcess.Outcome
    {
        let outcome = try ChildProcess.run(executable, arguments, environment: environment, timeLimit: timeLimit)
        if outcome.timedOut {
            throw CheckError(description: "the child `fiberstacks \(arguments.joined(separator: " "))` ran past its "
                + "\(Int(timeLimit)) s limit and was killed; stderr: \(oneLine(outcome.standardError))")
        }
        return outcome
    }

    /// Runs `overflow-child --fault guard-write` with `arguments`, writing `offset` bytes below the
    /// usable bottom of the stack labelled `label`; passes when the child died by SIGSEGV and the
    /// diagnostic names `label` and a distance of exactly `offset`, within `guardSize`.
    package static func expectGuardFault(
        _ arguments: [String], label: String, offset: Int, guardSize: Int, timeLimit: Double = timeLimit
    ) throws -> (Bool, String) {
        let child = try run(
            ["overflow-child", "--fault", "guard-write", "--label", label, "--offset", "\(offset)", "--guard-size", "\(guardSize)"]
                + arguments, environment: ["SWIFT_BACKTRACE": "enable=no"], timeLimit: timeLimit)
        let diagnostic = OverflowDiagnostic(in: child.standardError)
        let passed = child.signal == SIGSEGV && diagnostic?.label == label && diagnostic?.distance == offset
            && (1...guardSize).contains(offset)
        let seen = diagnostic.map { "diagnostic names \($0.label.map { "\"\($0)\"" } ?? "no label"), \($0.distance) B below" }
            ?? "no diagnostic"
        return (passed, "write \(offset) B below the usable bottom (guard \(guardSize) B): \(child.ending), \(seen)"
            + (passed ? "" : "; expected SIGSEGV naming \"\(label)\" at \(offset) B; stderr: \(oneLine(child.standardError))"))
    }

    /// The start of a child's standard error on one line, for a row of the table.
    package static func oneLine(_ text: String) -> String {
        text.prefix(300).split(separator: "\n", omittingEmptySubsequences: true).joined(separator: " | ")
    }
}
