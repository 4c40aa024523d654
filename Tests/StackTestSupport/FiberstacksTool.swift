import Foundation
import GuardPages
@_spi(Benchmarks) import StackDiagnostics

/// The `fiberstacks` binary built next to the test bundle.
public let fiberstacksBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    .deletingLastPathComponent().appendingPathComponent("fiberstacks").path

/// How a run of the `fiberstacks` binary ended, and what it printed.
public struct ToolRun: Sendable {
    /// The exit status, or the signal number when it was killed by one.
    public let status: Int32
    /// The signal that killed it, if one did.
    public let signal: Int32?
    /// Whether it ran past its time limit and was killed for it.
    public let timedOut: Bool
    /// Standard output.
    public let output: String
    /// Standard error.
    public let standardError: String
}

/// Runs the `fiberstacks` binary with `arguments` and `environment` added to ours, and waits at most
/// `timeLimit` seconds for it (then it is killed, and `timedOut` is set).
public func runFiberstacks(_ arguments: [String], environment: [String: String] = [:], timeLimit: Double = 300) throws
    -> ToolRun
{
    let child = try ChildProcess.run(fiberstacksBinary, arguments, environment: environment, timeLimit: timeLimit)
    return ToolRun(
        status: child.status ?? child.signal ?? -1, signal: child.signal, timedOut: child.timedOut,
        output: child.standardOutput, standardError: child.standardError)
}

/// The benchmark executable `fiberstacks bench` runs, built from this checkout's Benchmarks package.
public let benchmarksBinary: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return (parts + ["Benchmarks", ".build", "release", "fiberstacks-bench"]).joined(separator: "/")
}()

/// Whether the benchmark executable is built: tests of `fiberstacks bench` need it, and skip without it.
public let benchmarksBuilt = FileManager.default.isExecutableFile(atPath: benchmarksBinary)

/// The reason tests of `fiberstacks bench` skip when the benchmark executable is missing.
public let benchmarksMissing = "needs the benchmark executable: swift build -c release --package-path Benchmarks"

/// Writes `bytes` to a new executable file at `destination` (mode 755) through a descriptor that no child
/// inherits past exec (O_CLOEXEC): a child that another test spawns meanwhile would otherwise hold the
/// file open for writing for as long as it runs, and running the file would fail with ETXTBSY.
public func writeExecutable(_ bytes: Data, to destination: String) throws {
    let descriptor = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o755)
    guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(descriptor) }
    guard fchmod(descriptor, 0o755) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    try bytes.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
        var written = 0
        while written < buffer.count {
            let count = write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            guard count > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            written += count
        }
    }
}
