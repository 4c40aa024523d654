import Glibc
import Testing

/// A check for the body of an exit test. A failed `precondition` there shows the parent only the signal
/// (`.signal(SIGILL)`), never its message; this records the message and where the check is as an issue,
/// which Swift Testing forwards to the parent, then ends the child with `EXIT_FAILURE`. Not for code on a
/// fiber's stack, on a thread of the test's own or in a signal handler, where recording an issue cannot
/// run safely: `precondition` stays there.
public func ensure(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String = "a check failed",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    if !condition() { fail(message(), sourceLocation: sourceLocation) }
}

/// Ends an exit test's child as a failed `ensure` does.
public func fail(_ message: String, sourceLocation: SourceLocation = #_sourceLocation) -> Never {
    Issue.record(Comment(rawValue: "\(message) (\(sourceLocation.fileName):\(sourceLocation.line))"), sourceLocation: sourceLocation)
    exit(EXIT_FAILURE)
}
