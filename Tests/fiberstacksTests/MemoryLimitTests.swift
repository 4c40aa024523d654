import Foundation
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// A container's memory limit, far below MemAvailable: a memory cgroup of 400 MiB, in which a million
/// guarded stacks (about 420 MiB of page tables and bookkeeping) do not fit.
@Suite("A memory cgroup limit", needsNoSanitizer)
struct MemoryLimitTests {
    static let limit = 400 << 20

    /// This process's cgroup in a memory hierarchy where it may make a child cgroup and limit it: v1's
    /// memory controller, or v2 where the cgroup passes the memory controller down.
    static let hierarchy: MemoryCgroup.Hierarchy? = MemoryCgroup.hierarchies().first { hierarchy in
        guard access(hierarchy.directory, W_OK) == 0 else { return false }
        guard hierarchy.limitName == "memory.max" else { return true }
        let passedDown = (try? String(contentsOfFile: hierarchy.directory + "/cgroup.subtree_control", encoding: .utf8)) ?? ""
        return passedDown.split(whereSeparator: \.isWhitespace).contains("memory")
    }

    @Test("verify in a 400 MiB memory cgroup scales the million-stack check down to the limit, names it, and passes",
          .enabled(if: hierarchy != nil, "needs a memory cgroup this user may make a child in (root, cgroup v1 memory or v2 with +memory in cgroup.subtree_control)"))
    func verifyUnderLimit() throws {
        let hierarchy = try #require(Self.hierarchy)
        let directory = "\(hierarchy.directory)/fiberstacks-test-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        // The child has exited by then, so the cgroup is empty and can go.
        defer { _ = rmdir(directory) }
        try "\(Self.limit)".write(toFile: "\(directory)/\(hierarchy.limitName)", atomically: false, encoding: .utf8)
        let run = try ChildProcess.run(
            "/bin/sh", ["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$1\" verify --json", directory, fiberstacksBinary],
            timeLimit: 600)
        #expect(run.status == 0, "\(run.standardOutput)\(run.standardError)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any], "\(run.standardError)")
        let checks = try #require(json["checks"] as? [[String: Any]])
        let capacity = try #require(checks.first { $0["name"] as? String == "million-guarded" }, "\(checks)")
        let detail = capacity["detail"] as? String ?? ""
        #expect(capacity["status"] as? String == "pass", "\(capacity)")
        #expect(detail.contains("the memory cgroup limit allows") && detail.contains("\(directory)/\(hierarchy.limitName)"), "\(detail)")
        let stacks = Int(detail.prefix { $0.isNumber }) ?? 0
        #expect(stacks >= 100_000 && stacks < 1_000_000, "\(detail)")
    }
}
