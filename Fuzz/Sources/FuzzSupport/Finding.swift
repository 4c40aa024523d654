/// Reports a broken invariant: prints what broke, then traps, so libFuzzer saves the input as a
/// reproducer (run with `SWIFT_BACKTRACE=enable=no`, or the Swift backtracer keeps it from doing so).
public func finding(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError("FUZZ FINDING: \(message)", file: file, line: line)
}

/// Calls `finding` with `message` when `condition` is false.
@inline(__always)
public func check(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() { finding(message(), file: file, line: line) }
}
