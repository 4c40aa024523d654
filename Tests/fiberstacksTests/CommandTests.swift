import Foundation
import StackTestSupport
import Testing

/// Runs the built `fiberstacks` binary (next to the test bundle) and returns its exit status and stdout.
func runTool(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("fiberstacks")
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite("The fiberstacks command")
struct CommandTests {
    @Test("verify --json passes on this machine and lists its checks", needsNoThreadSanitizer)
    func verifyJSON() throws {
        let (status, output) = try runTool(["verify", "--json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]])
        #expect(json["passed"] as? Bool == true, "\(output)")
        #expect(status == 0)
        #expect(checks.count >= 10)
        for check in checks {
            #expect(Set(check.keys) == ["name", "allocator", "passed", "detail"])
        }
        #expect(checks.contains { ($0["name"] as? String)?.hasPrefix("guard-inaccessible") == true })
    }

    @Test("doctor --json reports the kernel and the map count")
    func doctorJSON() throws {
        let (status, output) = try runTool(["doctor", "--json"])
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        #expect((json["maxMapCount"] as? Int ?? 0) > 0)
        #expect(json["kernelRelease"] as? String != nil)
    }

    @Test("Bad arguments exit 2", arguments: [["verify", "--no-such-flag"], ["no-such-command"]])
    func badArguments(_ arguments: [String]) throws {
        #expect(try runTool(arguments).status == 2)
    }
}

@Suite("fiberstacks bench")
struct BenchCommandTests {
    @Test("bench --quick --json is well-formed and has every section")
    func quickJSON() throws {
        let (status, output) = try runTool(["bench", "--quick", "--json"])
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let results = try #require(json["results"] as? [[String: Any]])
        let sections = Set(results.compactMap { $0["section"] as? String })
        #expect(sections.isSuperset(of: ["stack_alloc", "prefault"]), "sections: \(sections)")
        for result in results {
            #expect((result["median"] as? Double ?? -1) > 0, "\(result)")
            #expect(result["reps"] as? Int == 3)
        }
        #expect(json["machine"] is [String: Any])
        #expect(json["ratios"] is [[String: Any]])
        // Either the peers ran in the same invocation, or the report says why not.
        #expect(json["peers"] is [[String: Any]] || json["peers_skipped"] is String)
    }

    @Test("bench rejects a non-positive repetition count with exit 2")
    func badReps() throws {
        #expect(try runTool(["bench", "--reps", "0"]).status == 2)
    }
}
