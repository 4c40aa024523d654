import Foundation
import StackAllocators
import StackTestSupport
import Testing

/// Runs the fiberstacks binary built next to the test bundle; returns its status and standard output.
private func fiberstacks(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: VM.fiberstacks)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite("fiberstacks NUMA commands on this host")
struct ToolTests {
    @Test(
        "verify binds a stack to every node with memory and proves it; invalid nodes are refused", needsNoThreadSanitizer,
        .enabled(if: NUMATopology.available, "needs libnuma working here (numa_available() >= 0)"))
    func verify() throws {
        let (status, output) = try fiberstacks(["verify", "--json"])
        #expect(status == 0, "\(output)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]]).filter {
            $0["allocator"] as? String == "mmap+numa"
        }
        let names = checks.compactMap { $0["name"] as? String }
        for node in try NUMATopology.current().memoryNodes {
            #expect(names.contains("bind-node\(node)"), "\(names)")
        }
        #expect(names.contains("invalid-nodes-rejected"))
        #expect(checks.allSatisfy { $0["passed"] as? Bool == true }, "\(checks)")
    }

    @Test("doctor has a NUMA section from libnuma", .enabled(if: NUMATopology.available, "needs libnuma working here"))
    func doctor() throws {
        let (status, output) = try fiberstacks(["doctor", "--json"])
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let numa = try #require(json["numa"] as? [String: Any])
        let nodes = try #require(numa["nodes"] as? [[String: Any]])
        #expect(nodes.count == (try NUMATopology.current().nodes.count))
        #expect(nodes.allSatisfy { $0["distances"] is [String: Int] && $0["cpus"] is [Int] })
        let text = try fiberstacks(["doctor"]).output
        #expect(text.contains("NUMA node 0"))
    }

    @Test(
        "numa-check passes on this host, and bench --section numa measures every NUMA figure",
        .enabled(if: NUMATopology.available, "needs libnuma working here"))
    func hiddenCommands() throws {
        let (checkStatus, checkOutput) = try fiberstacks(["numa-check", "--json"])
        #expect(checkStatus == 0, "\(checkOutput)")
        let report = try JSONDecoder().decode(VMReport.self, from: Data(checkOutput.utf8))
        report.expectAllPassed()
        let (benchStatus, benchOutput) = try fiberstacks(["bench", "--quick", "--json", "--section", "numa"])
        #expect(benchStatus == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(benchOutput.utf8)) as? [String: Any])
        let results = try #require(json["results"] as? [[String: Any]])
        let names = Set(results.compactMap { $0["name"] as? String })
        #expect(names == ["alloc_populate", "alloc_bind_populate", "mbind_untouched", "mbind_move", "placement_query"])
        #expect(results.allSatisfy { ($0["median"] as? Double ?? 0) > 0 })
    }
}
