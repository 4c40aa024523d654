import Foundation
import StackAllocators

/// `verify` for overflow detection: a child process that overflows a labelled guarded stack on a
/// secondary thread must die by SIGSEGV with the diagnostic naming that label; a null dereference must
/// die exactly as it would without our handler; canaries and high-water marks must measure what happened.
enum OverflowChecks {
    static func run(into report: inout VerifyReport) {
        let modes: [GuardMode] = GuardInstaller.lightweightGuardsSupported ? [.lightweight, .mprotect] : [.mprotect]
        for mode in modes {
            report.check("overflow-diagnostic/\(mode)", "overflow") { try overflowDiagnostic(mode) }
        }
        report.check("foreign-fault-chains", "overflow", foreignFaultChains)
        report.check("canary", "overflow", canary)
        report.check("high-water-mark", "overflow", highWaterMark)
    }

    /// The child overflows a stack labelled with our pid; it must die by SIGSEGV naming that label.
    private static func overflowDiagnostic(_ mode: GuardMode) throws -> (Bool, String) {
        let label = "verify-\(getpid())@worker-1"
        let child = try Child.run(["overflow-child", "--label", label, "--guard-mode", mode.rawValue])
        let line = child.standardError.split(separator: "\n").first { $0.contains("stack overflow in fiber") }
        let named = line?.contains("\"\(label)\"") == true && line?.contains("bytes below the usable bottom") == true
        guard child.signal == SIGSEGV, named, let line else {
            return (false, "expected death by SIGSEGV naming \"\(label)\"; got \(child.ending): \(child.standardError.prefix(300))")
        }
        return (true, "child died by SIGSEGV: " + line.replacingOccurrences(of: "fiberstacks: ", with: ""))
    }

    /// A null dereference with our handler installed dies the way it does without it (same signal,
    /// same Swift runtime crash report when the runtime's backtracer is on), and is not called an overflow.
    private static func foreignFaultChains() throws -> (Bool, String) {
        let environment = ["SWIFT_BACKTRACE": "enable=yes,interactive=no,threads=crashed,registers=none,images=none"]
        let with = try Child.run(["overflow-child", "--fault", "null"], environment: environment)
        let without = try Child.run(["overflow-child", "--fault", "null", "--no-handler"], environment: environment)
        let marker = "Program crashed"
        let passed = with.signal == SIGSEGV && with.signal == without.signal
            && with.standardError.contains(marker) == without.standardError.contains(marker)
            && !with.standardError.contains("stack overflow")
        let runtime = without.standardError.contains(marker)
            ? "chained to the Swift runtime's crash handler" : "default action (the Swift backtracer is off here)"
        return (passed, "null dereference: \(with.ending) with our handler, \(without.ending) without; \(runtime)")
    }

    /// A clean canary passes; one overwritten byte is reported, naming the stack's label.
    private static func canary() throws -> (Bool, String) {
        let stack = try MmapStackAllocator().allocate(StackRequest(usableSize: 64 << 10, guardSize: 0))
        let layout = stack.descriptor.layout
        try GuardRegistry.register(layout, label: "verify-canary")
        defer { GuardRegistry.unregister(layout) }
        Canary.write(layout)
        let clean = Canary.isIntact(layout)
        (stack.usableBottom + 5).storeBytes(of: 0, as: UInt8.self)
        do {
            try Canary.check(layout)
            return (false, "an overwritten canary passed the check")
        } catch .canaryCorrupted(_, let label) where label == "verify-canary" {
            return (clean, clean ? "clean canary passes; overwritten canary reported for \"verify-canary\"" : "clean canary failed")
        } catch {
            return (false, "unexpected error: \(error)")
        }
    }

    /// The same 96 KiB of recursion on two stacks, one measured by residency, one painted: both marks
    /// must lie between 96 KiB and 96 KiB plus thread start-up, within one page of each other.
    private static func highWaterMark() throws -> (Bool, String) {
        let allocator = try MmapStackAllocator()
        let depth = 96
        var marks: [HighWaterMark.Method: Int] = [:]
        for method in HighWaterMark.Method.allCases {
            let stack = try allocator.allocate(StackRequest(usableSize: 256 << 10))
            if method == .painted { HighWaterMark.paint(stack.descriptor.layout) }
            try StackThread.run(on: stack.descriptor.layout, name: "fs-verify-hwm") { _ = StackThread.use(kibibytes: depth) }
            marks[method] = try stack.highWaterMark(by: method)
        }
        let residency = marks[.residency]!, painted = marks[.painted]!
        let plausible = (depth << 10...(depth + 64) << 10).contains(painted)
        let agree = residency >= painted && residency - painted < systemPageSize
        return (plausible && agree, "\(depth) KiB of recursion: residency says \(residency) B, painting says \(painted) B")
    }
}

/// A run of this executable as a child process, and how it ended.
private struct Child {
    let status: Int32
    let signal: Int32?
    let standardError: String

    var ending: String { signal.map { "signal \($0)" } ?? "exit \(status)" }

    /// Runs `/proc/self/exe arguments` with `environment` added to ours, and waits for it.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Child {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let signaled = process.terminationReason == .uncaughtSignal
        return Child(
            status: process.terminationStatus, signal: signaled ? process.terminationStatus : nil,
            standardError: String(decoding: data, as: UTF8.self))
    }
}
