import Foundation
import StackTestSupport
import Testing

/// How a run of the built `fiberstacks` binary ended.
struct ChildOutcome {
    let signal: Int32?
    let status: Int32
    let standardError: String
}

/// Runs the built `fiberstacks` binary with `environment` added to ours; returns how it ended and its stderr.
func runChild(_ arguments: [String], environment: [String: String] = [:]) throws -> ChildOutcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("fiberstacks")
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let pipe = Pipe()
    process.standardError = pipe
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let signaled = process.terminationReason == .uncaughtSignal
    return ChildOutcome(
        signal: signaled ? process.terminationStatus : nil, status: process.terminationStatus,
        standardError: String(decoding: data, as: UTF8.self))
}

@Suite("Overflow detection through the fiberstacks command")
struct OverflowCommandTests {
    /// The Swift runtime's backtracer on, as it is by default outside exit tests.
    static let backtracer = ["SWIFT_BACKTRACE": "enable=yes,interactive=no,threads=crashed,registers=none,images=none"]

    @Test("A null dereference still reaches the Swift runtime's backtracer: same signal, same crash report", needsNoThreadSanitizer)
    func chainsToSwiftBacktracer() throws {
        let with = try runChild(["overflow-child", "--fault", "null"], environment: Self.backtracer)
        let without = try runChild(["overflow-child", "--fault", "null", "--no-handler"], environment: Self.backtracer)
        #expect(without.signal == SIGSEGV)
        #expect(with.signal == SIGSEGV)
        let report = "Program crashed: Bad pointer dereference at 0x0000000000000008"
        #expect(without.standardError.contains(report), "\(without.standardError.prefix(500))")
        #expect(with.standardError.contains(report), "\(with.standardError.prefix(500))")
        #expect(!with.standardError.contains("stack overflow"))
    }

    @Test("An overflow with the Swift backtracer on is still named, and still dies by SIGSEGV")
    func overflowWithBacktracer() throws {
        let child = try runChild(["overflow-child", "--label", "job-17@worker-1"], environment: Self.backtracer)
        #expect(child.signal == SIGSEGV)
        #expect(child.standardError.contains(#"fiberstacks: stack overflow in fiber "job-17@worker-1" (thread "#))
        #expect(child.standardError.contains(#""fs-worker-1"): fault at 0x"#))
    }

    @Test("verify runs the overflow checks and they pass; the child command is hidden from help", needsNoThreadSanitizer)
    func verifyRows() throws {
        let (status, output) = try runTool(["verify", "--json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]])
        let overflow = checks.filter { $0["allocator"] as? String == "overflow" }
        let names = Set(overflow.compactMap { $0["name"] as? String })
        #expect(names.isSuperset(of: ["overflow-diagnostic/mprotect", "foreign-fault-chains", "canary", "high-water-mark"]))
        for check in overflow {
            #expect(check["passed"] as? Bool == true, "\(check)")
        }
        #expect(status == 0)
        #expect(try !runTool(["--help"]).output.contains("overflow-child"))
    }
}
