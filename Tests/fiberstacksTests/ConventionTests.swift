import Foundation
@_spi(Benchmarks) import StackAllocators
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// How the tool behaves as a command-line citizen: usage, version, exit codes, JSON shape, progress.
@Suite("fiberstacks command-line conventions")
struct ConventionTests {
    @Test("A bare fiberstacks prints usage and exits 0 without running a check")
    func bareCommand() throws {
        let run = try runFiberstacks([])
        #expect(run.status == 0 && run.signal == nil)
        #expect(run.output.contains("USAGE: fiberstacks <subcommand>"), "\(run.output)")
        #expect(!run.output.contains("PASS"), "verify ran: \(run.output)")
    }

    @Test("help with a topic that is no command is a usage error naming the commands; help with one shows its help",
          arguments: [(["help", "nosuch"], 64), (["help", "doctor", "extra"], 64), (["help", "doctor"], 0), (["help"], 0)] as [([String], Int32)])
    func helpTopics(_ arguments: [String], _ status: Int32) throws {
        let run = try runFiberstacks(arguments)
        #expect(run.status == status, "\(arguments): \(run.output) \(run.standardError)")
        if status == 64 {
            #expect(run.standardError.contains("unknown command") && run.standardError.contains("doctor, verify, bench, frames")
                    && !run.standardError.contains("overflow-child"), "\(run.standardError)")
        }
    }

    @Test("--version prints the version of the newest released CHANGELOG.md entry")
    func version() throws {
        let changelog = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("CHANGELOG.md")
        let text = try String(contentsOf: changelog, encoding: .utf8)
        // Changes since the last release gather under "## [Unreleased]" (Keep a Changelog).
        let heading = try #require(text.split(separator: "\n").first { $0.hasPrefix("## [") && !$0.hasPrefix("## [Unreleased]") })
        let newest = heading.dropFirst("## [".count).prefix { $0 != "]" }
        let run = try runFiberstacks(["--version"])
        #expect(run.status == 0)
        #expect(run.output.trimmingCharacters(in: .whitespacesAndNewlines) == String(newest))
    }

    @Test("--help documents the exit codes")
    func exitCodesDocumented() throws {
        let help = try runFiberstacks(["--help"]).output
        for line in ["0   success", "1   a check failed", "64  a usage error", "70  an internal error"] {
            #expect(help.contains(line), "\(help)")
        }
    }

    @Test("A subcommand's help that states exit statuses gives the one its usage errors exit with",
          arguments: ["doctor", "verify", "frames"])
    func subcommandExitCodesDocumented(_ command: String) throws {
        let help = try runFiberstacks([command, "--help"]).output
        let misuse = try runFiberstacks([command, "--no-such-flag"])
        #expect(misuse.status == 64, "\(misuse.standardError)")
        guard help.contains("Exit status") else { return }
        #expect(help.contains("64 for a usage error"), "\(help)")
    }

    @Test("doctor JSON: schema_version and tool_version at the top, every key snake_case")
    func doctorEnvelope() throws { try Self.expectEnvelope(["doctor", "--json"], schema: 1) }

    @Test("bench JSON: schema_version and tool_version at the top, every key snake_case",
          .enabled(if: benchmarksBuilt, Comment(rawValue: benchmarksMissing)))
    func benchEnvelope() throws { try Self.expectEnvelope(["bench", "--quick", "--json", "--section", "capacity"], schema: 2) }

    /// Runs `arguments` and checks the top of its JSON and the case of every key.
    static func expectEnvelope(_ arguments: [String], schema: Int) throws {
        let version = try runFiberstacks(["--version"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let run = try runFiberstacks(arguments)
        #expect(run.status == 0, "\(arguments): \(run.standardError)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])
        #expect(json["schema_version"] as? Int == schema, "\(arguments)")
        #expect(json["tool_version"] as? String == version, "\(arguments)")
        let camel = keys(json).filter { $0.contains { $0.isUppercase } }
        #expect(camel.isEmpty, "\(arguments): keys not in snake_case: \(camel)")
    }

    /// Every key of every object in `value`, nested ones included.
    static func keys(_ value: Any) -> [String] {
        if let object = value as? [String: Any] { return object.keys + object.values.flatMap(keys) }
        if let array = value as? [Any] { return array.flatMap(keys) }
        return []
    }

    @Test("bench --check exits 1 when a target is not evaluated; without --check the run exits 0", .enabled(if: benchmarksBuilt, Comment(rawValue: benchmarksMissing)))
    func benchCheck() throws {
        // The frame audit has a bound but no ratio: every ratio is not evaluated.
        let plain = try runFiberstacks(["bench", "--quick", "--json", "--section", "frames"])
        #expect(plain.status == 0, "\(plain.standardError)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(plain.output.utf8)) as? [String: Any])
        let ratios = try #require(json["ratios"] as? [[String: Any]])
        #expect(!ratios.isEmpty && ratios.allSatisfy { $0["status"] as? String == "not_evaluated" }, "\(ratios)")
        let checked = try runFiberstacks(["bench", "--quick", "--section", "frames", "--check"])
        #expect(checked.status == 1, "\(checked.standardError)")
        #expect(checked.standardError.contains("targets missed or not run (--check)"), "\(checked.standardError)")
        #expect(checked.output.contains("NOT RUN"), "\(checked.output)")
    }

    @Test("bench says what it is running as each section starts, on standard error", .enabled(if: benchmarksBuilt, Comment(rawValue: benchmarksMissing)))
    func benchProgress() throws {
        let run = try runFiberstacks(["bench", "--quick", "--section", "capacity", "--capacity-seconds", "5"])
        #expect(run.status == 0)
        let start = try #require(run.standardError.range(of: "bench: capacity (up to 1000 live guarded stacks or 5 s"))
        let done = try #require(run.standardError.range(of: "bench: capacity done in "))
        #expect(start.upperBound <= done.lowerBound, "\(run.standardError)")
        // Within a section, each comparison names ours and its peers as it starts.
        let pooled = try runFiberstacks(["bench", "--quick", "--section", "pooled"])
        #expect(pooled.standardError.contains("bench:   pooled size=64K threads=1: thread_cache, thread_cache, peer boost_pooled_fixedsize_stack"),
                "\(pooled.standardError)")
    }

    @Test("bench without the benchmark executable fails with exit 70 and names the command that builds it")
    func benchNotBuilt() throws {
        let run = try runFiberstacks(["bench", "--quick"], environment: ["FIBERSTACKS_BENCH": "/nonexistent/fiberstacks-bench"])
        #expect(run.status == 70, "\(run.standardError)")
        #expect(run.standardError.contains("/nonexistent/fiberstacks-bench cannot run (No such file or directory)"), "\(run.standardError)")
        #expect(run.standardError.contains("swift build -c release --package-path Benchmarks"), "\(run.standardError)")
    }

    /// Other tests mount and remount private hugetlbfs file systems while this one runs, so only the mounts
    /// that /proc/mounts shows unchanged before and after both doctor runs are compared.
    @Test("doctor in a container without sysfs says that /sys is not mounted, for transparent huge pages and the huge page pools",
          needsMountPrivilege)
    func doctorWithoutSysfs() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            hideSysfs()
            let text = try runFiberstacks(["doctor"]).output
            for directory in ["/sys/kernel/mm/transparent_hugepage", "/sys/kernel/mm/hugepages"] {
                ensure(text.contains("sysfs is not mounted on /sys, so \(directory) cannot be read"), text)
            }
        }
    }

    @Test("doctor in a cgroup with a CPU quota of one CPU names the quota, its file, and the one worker a scheduler runs",
          needsCPUCgroup)
    func doctorUnderCPUQuota() throws {
        let hierarchy = try #require(writableCgroup(controller: "cpu"))
        let (settings, file) = oneCPUQuota(in: hierarchy)
        let directory = try makeChildCgroup(of: hierarchy, "doctor-cpu-quota", settings: settings)
        // The child has exited by then, so the cgroup is empty and can go.
        defer { _ = rmdir(directory) }
        let run = try ChildProcess.run(
            "/bin/sh", ["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$1\" doctor", directory, fiberstacksBinary], timeLimit: 120)
        #expect(run.status == 0, "\(run.standardError)")
        #expect(run.standardOutput.contains("CPU quota 1.0 CPUs (\(directory)/\(file)): a scheduler runs 1 worker\n"),
                "\(run.standardOutput)")
    }

    @Test("doctor lists every hugetlbfs mount of /proc/mounts with its page size and size limit")
    func doctorHugeTLBMounts() throws {
        func hugetlbfsMounts() throws -> [[Substring]] {
            try String(contentsOfFile: "/proc/mounts", encoding: .utf8).split(separator: "\n")
                .map { $0.split(separator: " ") }.filter { $0.count >= 4 && $0[2] == "hugetlbfs" }
        }
        let before = try hugetlbfsMounts()
        let text = try runFiberstacks(["doctor"]).output
        let run = try runFiberstacks(["doctor", "--json"])
        let after = try hugetlbfsMounts()
        let mounts = before.filter { after.contains($0) }
        #expect(!mounts.isEmpty || before.isEmpty, "every hugetlbfs mount changed while doctor ran: \(before) / \(after)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])
        let limits = try #require(json["hugetlbfs_size_limits"] as? [[String: Any]])
        if before == after { #expect(limits.count == mounts.count) }
        for fields in mounts {
            let size = fields[3].split(separator: ",").first { $0.hasPrefix("size=") }.flatMap { Int($0.dropFirst(5)) }
            let entry = try #require(limits.first { $0["path"] as? String == String(fields[1]) })
            #expect(entry["size_limit"] as? Int == size, "\(entry)")
            let limit = size.map { "size limit \(formatByteCount($0))" } ?? "no size limit"
            #expect(text.contains("\(fields[1]) ("), "\(text)")
            // A mount this user cannot write says so after the limit.
            #expect(text.contains("pages, \(limit))") || text.contains("pages, \(limit), not writable by uid \(getuid())"), "\(text)")
        }
    }

    @Test("doctor prints the NUMA distance matrix as numactl -H does", .enabled(if: NUMATopology.available, "needs libnuma"))
    func doctorDistanceMatrix() throws {
        let topology = try NUMATopology.current()
        let text = try runFiberstacks(["doctor"]).output
        let lines = text.split(separator: "\n").map(String.init)
        let header = try #require(lines.firstIndex { $0.hasPrefix("node ") }, "\(text)")
        #expect(lines[header].split(separator: " ") == ["node"] + topology.nodes.map { Substring(String($0.id)) })
        for (offset, node) in topology.nodes.enumerated() {
            let row = lines[header + 1 + offset].split(separator: " ").map(String.init)
            #expect(row == ["\(node.id):"] + topology.nodes.map { String(node.distances[$0.id] ?? -1) }, "\(text)")
        }
    }
}
