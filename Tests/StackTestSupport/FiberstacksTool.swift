import Foundation

/// The `fiberstacks` binary built next to the test bundle.
public let fiberstacksBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    .deletingLastPathComponent().appendingPathComponent("fiberstacks").path

/// How a run of the `fiberstacks` binary ended, and what it printed.
public struct ToolRun: Sendable {
    /// The exit status, or the signal number when it was killed by one.
    public let status: Int32
    /// The signal that killed it, if one did.
    public let signal: Int32?
    /// Standard output.
    public let output: String
    /// Standard error.
    public let standardError: String
}

/// Runs the `fiberstacks` binary with `arguments`, `environment` added to ours, and waits for it.
/// Standard error goes through a file, so neither stream can fill up while the other is read.
public func runFiberstacks(_ arguments: [String], environment: [String: String] = [:]) throws -> ToolRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: fiberstacksBinary)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-\(UUID().uuidString).stderr")
    guard FileManager.default.createFile(atPath: errorFile.path, contents: nil) else {
        throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: errorFile.path])
    }
    defer { try? FileManager.default.removeItem(at: errorFile) }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = try FileHandle(forWritingTo: errorFile)
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let signaled = process.terminationReason == .uncaughtSignal
    return ToolRun(
        status: process.terminationStatus, signal: signaled ? process.terminationStatus : nil,
        output: String(decoding: data, as: UTF8.self),
        standardError: (try? String(contentsOf: errorFile, encoding: .utf8)) ?? "")
}
