import Foundation
@_spi(Benchmarks) import StackAllocators
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

@Suite("fiberstacks NUMA commands on this host")
struct ToolTests {
    @Test(
        "verify binds a stack to every node with memory and proves it; invalid nodes are refused", needsNoSanitizer,
        .enabled(if: NUMATopology.available, "needs libnuma working here (numa_available() >= 0)"))
    func verify() throws {
        let run = try runFiberstacks(["verify", "--json", "--million-stacks", "100000"])
        let (status, output) = (run.status, run.output)
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
        #expect(checks.allSatisfy { $0["status"] as? String == "pass" }, "\(checks)")
    }

    @Test("doctor has a NUMA section from libnuma", .enabled(if: NUMATopology.available, "needs libnuma working here"))
    func doctor() throws {
        let run = try runFiberstacks(["doctor", "--json"])
        let (status, output) = (run.status, run.output)
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let numa = try #require(json["numa"] as? [String: Any])
        let nodes = try #require(numa["nodes"] as? [[String: Any]])
        #expect(nodes.count == (try NUMATopology.current().nodes.count))
        #expect(nodes.allSatisfy { $0["distances"] is [String: Int] && $0["cpus"] is [Int] })
        let text = try runFiberstacks(["doctor"]).output
        #expect(text.contains("NUMA node 0"))
    }

    @Test(
        "numa-check passes on this host, and bench --section numa measures every NUMA figure",
        .enabled(if: NUMATopology.available, "needs libnuma working here"),
        .enabled(if: benchmarksBuilt, Comment(rawValue: benchmarksMissing)))
    func hiddenCommands() throws {
        let check = try runFiberstacks(["numa-check", "--json"])
        let (checkStatus, checkOutput) = (check.status, check.output)
        #expect(checkStatus == 0, "\(checkOutput)")
        let report = try JSONDecoder().decode(VMReport.self, from: Data(checkOutput.utf8))
        report.expectAllPassed()
        let bench = try runFiberstacks(["bench", "--quick", "--json", "--section", "numa"])
        let (benchStatus, benchOutput) = (bench.status, bench.output)
        #expect(benchStatus == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(benchOutput.utf8)) as? [String: Any])
        let results = try #require(json["results"] as? [[String: Any]])
        let names = Set(results.compactMap { $0["name"] as? String })
        #expect(names == ["alloc_populate", "alloc_bind_populate", "mbind_untouched", "mbind_move", "placement_query"])
        #expect(results.allSatisfy { ($0["median"] as? Double ?? 0) > 0 })
    }

    @Test(
        "Where a container hides /sys/devices/system/node, doctor and verify run and NUMA is unavailable, naming the masked path and no package",
        .enabled(if: getuid() == 0 && access("/usr/bin/unshare", X_OK) == 0, "needs root and unshare(1) for a mount namespace"))
    func hiddenNodeDirectory() throws {
        /// Runs the tool with `arguments` in a mount namespace whose /sys/devices/system/node is an empty tmpfs.
        func runHidden(_ arguments: [String]) throws -> ChildProcess.Outcome {
            try ChildProcess.run(
                "/usr/bin/unshare",
                ["-m", "/bin/sh", "-c", "mount -t tmpfs none /sys/devices/system/node && exec \"$0\" \"$@\"", fiberstacksBinary]
                    + arguments,
                timeLimit: 300)
        }
        let doctor = try runHidden(["doctor"])
        #expect(doctor.status == 0 && doctor.signal == nil, "\(doctor.standardError)")
        #expect(doctor.standardOutput.contains("none listed: /sys/devices/system/node/online is missing"), "\(doctor.standardOutput)")
        #expect(doctor.standardOutput.contains("/sys/devices/system/node is hidden: /sys/devices/system/node is a tmpfs")
                && !doctor.standardOutput.contains("libnuma1"), "\(doctor.standardOutput)")
        let verify = try runHidden(["verify", "--json", "--million-stacks", "1000"])
        #expect(verify.status == 0 && verify.signal == nil, "\(verify.standardError)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(verify.standardOutput.utf8)) as? [String: Any])
        let numa = try #require(json["checks"] as? [[String: Any]]).filter { $0["allocator"] as? String == "mmap+numa" }
        #expect(!numa.isEmpty && numa.allSatisfy { $0["status"] as? String == "skip" }, "\(numa)")
        #expect(numa.allSatisfy { ($0["detail"] as? String ?? "").contains("/sys/devices/system/node") }, "\(numa)")
    }
}
