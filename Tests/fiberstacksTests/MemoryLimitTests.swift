import Foundation
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// A container's memory limit, far below MemAvailable: a memory cgroup of 400 MiB, in which a million
/// guarded stacks (about 420 MiB of page tables and bookkeeping) do not fit, and one of 64 MiB, in which
/// 1000 populated 64 KiB stacks do not fit either.
@Suite("A memory cgroup limit", needsNoSanitizer)
struct MemoryLimitTests {
    static let hierarchy = writableCgroup(controller: "memory")

    @Test("verify in a memory cgroup scales the checks that hold many stacks down to the limit, names it, and passes",
          .enabled(if: hierarchy != nil, "needs a memory cgroup this user may make a child in (root, cgroup v1 memory or v2 with +memory in cgroup.subtree_control)"),
          arguments: [400 << 20, 64 << 20])
    func verifyUnderLimit(_ limit: Int) throws {
        let hierarchy = try #require(Self.hierarchy)
        let limitName = MemoryCgroup.fileNames(in: hierarchy).limit
        let directory = try makeChildCgroup(
            of: hierarchy, "memory-\(limit >> 20)m", settings: [(limitName, "\(limit)")])
        // The child has exited by then, so the cgroup is empty and can go.
        defer { _ = rmdir(directory) }
        let run = try ChildProcess.run(
            "/bin/sh", ["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$1\" verify --json", directory, fiberstacksBinary],
            timeLimit: 600)
        #expect(run.status == 0, "\(run.standardOutput)\(run.standardError)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any], "\(run.standardError)")
        let checks = try #require(json["checks"] as? [[String: Any]])
        let capacity = try #require(checks.first { $0["name"] as? String == "million-guarded" }, "\(checks)")
        let detail = capacity["detail"] as? String ?? ""
        #expect(capacity["status"] as? String == "pass", "\(capacity)")
        // With mprotect guards alone, vm.max_map_count holds fewer stacks still, and names itself instead.
        if GuardInstaller.lightweightGuardsSupported {
            #expect(detail.contains("the memory cgroup limit allows") && detail.contains("\(directory)/\(limitName)"), "\(detail)")
        }
        let stacks = Int(detail.prefix { $0.isNumber }) ?? 0
        #expect((1_000..<1_000_000).contains(stacks), "\(detail)")
        guard limit < 100 << 20 else { return }
        // 1000 populated stacks need 64 MiB: the in-process check holds what the limit leaves.
        let live = checks.filter { $0["name"] as? String == "live-and-released" }
        #expect(!live.isEmpty && live.allSatisfy {
            $0["status"] as? String == "pass" && ($0["detail"] as? String ?? "").contains("the memory cgroup limit allows")
        }, "\(live)")
    }

    @Test("The binding limit is read from cgroup v2 and v1 trees as mounted, a container's subtree included, up to the root")
    func limitsReadFromTheTree() throws {
        let tree = FakeCgroupTree()
        let root = tree.root
        let write = tree.write
        func binding(_ memberships: String, _ mountinfo: String) -> MemoryCgroup? {
            MemoryCgroup.binding(in: CgroupHierarchy.hierarchies(controller: "memory", memberships: memberships, mountinfo: mountinfo))
        }
        // v2: a 400 MiB limit two levels up binds, not the "max" of the process's own cgroup.
        try write("v2/system.slice/memory.max", "419430400\n")
        try write("v2/system.slice/memory.current", "104857600\n")
        try write("v2/system.slice/memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n")
        try write("v2/system.slice/app.service/memory.max", "max\n")
        try write("v2/system.slice/app.service/memory.current", "1048576\n")
        let v2 = binding(
            "0::/system.slice/app.service\n",
            "35 24 0:30 / \(root)/v2 rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
        #expect(v2?.limitFile == "\(root)/v2/system.slice/memory.max" && v2?.limit == 400 << 20, "\(String(describing: v2))")
        #expect(v2?.room == 300 << 20 && v2?.oomKills == 1, "\(String(describing: v2))")
        // A container that sees only its subtree: the mount's root is the cgroup's path; a sibling whose name
        // starts the same is not it.
        try write("container/memory.max", "268435456")
        try write("container/memory.current", "0")
        try write("wrong/c/memory.max", "1")
        try write("wrong/c/memory.current", "0")
        let container = binding(
            "0::/docker/abc\n",
            "40 30 0:31 /docker/ab \(root)/wrong rw - cgroup2 cgroup2 rw\n40 30 0:31 /docker/abc \(root)/container rw - cgroup2 cgroup2 rw\n")
        #expect(container == nil, "a mount of /docker/ab is not one of /docker/abc: \(String(describing: container))")
        let own = binding(
            "0::/docker/abc\n",
            "40 30 0:31 /docker/abc \(root)/container rw - cgroup2 cgroup2 rw\n")
        #expect(own?.limit == 256 << 20 && own?.limitFile == "\(root)/container/memory.max", "\(String(describing: own))")
        // v1's memory controller, comma-joined with another; its "no limit" is a huge number.
        try write("v1/memory.limit_in_bytes", "9223372036854771712")
        try write("v1/memory.usage_in_bytes", "1")
        try write("v1/job/memory.limit_in_bytes", "134217728")
        try write("v1/job/memory.usage_in_bytes", "33554432")
        try write("v1/job/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
        let v1 = binding(
            "5:cpu,cpuacct:/job\n4:memory,hugetlb:/job\n0::/\n",
            "33 25 0:29 / \(root)/v1 rw - cgroup cgroup rw,memory,hugetlb\n")
        #expect(v1?.limit == 128 << 20 && v1?.room == 96 << 20 && v1?.oomKills == 4, "\(String(describing: v1))")
    }
}
