import Foundation
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// Exit status and standard output of the built `fiberstacks` binary run with `arguments`.
func runTool(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let run = try runFiberstacks(arguments)
    return (run.status, run.output)
}

@Suite("The fiberstacks command")
struct CommandTests {
    @Test("verify --json passes on this machine: versions, summary, and every check pass, fail or skip", needsNoSanitizer)
    func verifyJSON() throws {
        let (status, output) = try runTool(["verify", "--json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]])
        #expect(json["schema_version"] as? Int == 2 && json["tool_version"] is String)
        let summary = try #require(json["summary"] as? [String: Int])
        for check in checks where check["status"] as? String == "fail" {
            Issue.record("failed: \(check)")
        }
        #expect(json["status"] as? String == "pass", "\(summary)")
        #expect(status == 0)
        #expect(checks.count >= 10)
        for check in checks {
            let status = check["status"] as? String
            #expect(["pass", "fail", "skip"].contains(status), "\(check)")
            // A skip names the capability it lacked; nothing else carries one.
            let keys: Set<String> = ["name", "allocator", "status", "detail", "seconds"]
            #expect(Set(check.keys) == (status == "skip" ? keys.union(["capability"]) : keys), "\(check)")
        }
        let counted = ["pass": "passed", "fail": "failed", "skip": "skipped"].mapValues { key in summary[key] }
        for (state, count) in counted {
            #expect(count == checks.filter { $0["status"] as? String == state }.count, "\(state): \(summary)")
        }
        #expect(summary["total"] == checks.count)
        #expect(checks.contains { ($0["name"] as? String)?.hasPrefix("guard-inaccessible") == true })
    }

    @Test("verify prints a row per check, then 'N passed, N failed, N skipped'", needsNoSanitizer)
    func verifyTable() throws {
        let (_, output) = try runTool(["verify", "--million-stacks", "100000"])
        let lines = output.split(separator: "\n")
        let rows = lines.dropLast()
        #expect(rows.allSatisfy { $0.hasPrefix("PASS  ") || $0.hasPrefix("FAIL  ") || $0.hasPrefix("SKIP  ") }, "\(output)")
        let count = { (prefix: String) in rows.filter { $0.hasPrefix(prefix) }.count }
        #expect(lines.last.map(String.init) == "\(count("PASS")) passed, \(count("FAIL")) failed, \(count("SKIP")) skipped")
    }

    @Test("verify --require turns a skip for that capability into a failure; an unknown one is a usage error", needsNoSanitizer)
    func require() throws {
        let bad = try runFiberstacks(["verify", "--require", "thp,no-such-capability"])
        #expect(bad.status == 64)
        #expect(bad.standardError.contains("--require") && bad.standardError.contains("no-such-capability"))
        #expect(bad.standardError.contains("lightweight-guards, mprotect-guards, hugetlbfs, hugetlb-anonymous, gigantic-pages, thp"))
        // Every machine lacks something: the multi-node checks skip on one node, lightweight guards
        // before Linux 6.13, the 1 GiB pool almost everywhere. Require what was skipped.
        let plain = try runTool(["verify", "--json", "--million-stacks", "100000"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(plain.output.utf8)) as? [String: Any])
        let skipped = try #require(json["checks"] as? [[String: Any]]).filter { $0["status"] as? String == "skip" }
        let capability = try #require(skipped.first?["capability"] as? String, "nothing skipped here")
        let strict = try runTool(["verify", "--json", "--million-stacks", "100000", "--require", capability])
        #expect(strict.status == 1)
        let strictJSON = try #require(try JSONSerialization.jsonObject(with: Data(strict.output.utf8)) as? [String: Any])
        let rows = try #require(strictJSON["checks"] as? [[String: Any]]).filter { $0["capability"] as? String == capability }
        #expect(!rows.isEmpty && rows.allSatisfy { $0["status"] as? String == "fail" }, "\(rows)")
        #expect(strictJSON["required"] as? [String] == [capability])
    }

    @Test("doctor --json reports the kernel, the map count and the overcommit policy")
    func doctorJSON() throws {
        let (status, output) = try runTool(["doctor", "--json"])
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        #expect((json["max_map_count"] as? Int ?? 0) > 0)
        #expect(json["kernel_release"] as? String != nil)
        let overcommit = try String(contentsOfFile: "/proc/sys/vm/overcommit_memory", encoding: .utf8)
        #expect(json["overcommit_memory"] as? Int == Int(overcommit.trimmingCharacters(in: .whitespacesAndNewlines)), "\(json)")
    }

    @Test("Bad arguments are usage errors: exit 64", arguments: [["verify", "--no-such-flag"], ["no-such-command"]])
    func badArguments(_ arguments: [String]) throws {
        #expect(try runTool(arguments).status == 64)
    }
}

@Suite("fiberstacks bench", .enabled(if: benchmarksBuilt, Comment(rawValue: benchmarksMissing)))
struct BenchCommandTests {
    /// Every section `fiberstacks bench` has (the JSON `section` values).
    static let sections = [
        "stack_alloc", "pooled", "prefault", "context_switch", "scheduler", "suspended", "tlb", "numa", "capacity", "frames",
    ]
    /// The sections measured once, ours and peers alike (capacity, the suspended jobs, the frame audit);
    /// every other 3 times under --quick.
    static let measuredOnce = ["capacity", "suspended", "frames"]

    @Test("bench --quick --json is well-formed: every section measured or skipped with a reason, peers beside ours, ratios judged, the SVG drawn")
    func quickJSON() throws {
        let svg = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-bench-\(UUID().uuidString).svg").path
        defer { try? FileManager.default.removeItem(atPath: svg) }
        let run = try runFiberstacks(["bench", "--quick", "--json", "--svg", svg])
        #expect(run.status == 0 && run.signal == nil, "\(run.standardError)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any], "\(run.output)")
        let results = try #require(json["results"] as? [[String: Any]])
        let skipped = try #require(json["skipped"] as? [[String: Any]])
        #expect(json["sections"] as? [String] == Self.sections)
        let measured = Set(results.compactMap { $0["section"] as? String })
        let skippedSections = Set(skipped.compactMap { $0["section"] as? String })
        for section in Self.sections {
            #expect(measured.contains(section) || skippedSections.contains(section), "section \(section) is missing")
        }
        for skip in skipped {
            #expect((skip["reason"] as? String ?? "").count > 10, "a skip must say why: \(skip)")
            #expect(Self.sections.contains(skip["section"] as? String ?? ""), "\(skip)")
        }
        for result in results {
            let keys = ["section", "name", "params", "unit", "median", "min", "p10", "p90", "max", "reps", "ops_per_rep"]
            #expect(keys.allSatisfy { result[$0] != nil }, "\(result)")
            let (low, median, high) = (result["min"] as? Double ?? -1, result["median"] as? Double ?? -1, result["max"] as? Double ?? -1)
            #expect(median > 0 && low <= median && median <= high, "\(result)")
            let once = Self.measuredOnce.contains(result["section"] as? String ?? "")
            #expect(result["reps"] as? Int == (once ? 1 : 3), "\(result)")
            #expect((result["ops_per_rep"] as? Int ?? 0) > 0, "\(result)")
        }
        let machine = try #require(json["machine"] as? [String: Any])
        #expect((machine["cores"] as? Int ?? 0) > 0 && machine["kernel"] is String && machine["virtualization"] is String)
        let counters = try #require(json["counters"] as? [String: String])
        for counter in ["page_faults", "dtlb_read_misses"] {
            let state = try #require(counters[counter])
            #expect(state == "available" || state.hasPrefix("not available: "), "\(counter): \(state)")
        }
        // The peers ran in the same process, as many repetitions as ours; one that differs says how.
        let peers = try #require(json["peers"] as? [[String: Any]])
        let peerNames = Set(peers.compactMap { $0["name"] as? String })
        for name in ["boost_protected_fixedsize_stack", "boost_pooled_fixedsize_stack", "mmap_mprotect", "boost_jump_fcontext",
                     "ucontext_swapcontext", "taskgroup_fan_out", "dispatch_fan_out", "boost_fiber_fan_out", "concurrent_perform"] {
            #expect(peerNames.contains(name), "peer \(name) missing: \(peerNames.sorted())")
        }
        for peer in peers {
            let once = Self.measuredOnce.contains(peer["section"] as? String ?? "")
            #expect(peer["reps"] as? Int == (once ? 1 : 3) && (peer["median"] as? Double ?? 0) > 0, "\(peer)")
        }
        let boost = try #require(peers.first { $0["name"] as? String == "boost_protected_fixedsize_stack" })
        #expect((boost["unmatched"] as? [String])?.contains("guard_size: 4096 vs 65536") == true, "\(boost)")
        let ratios = try #require(json["ratios"] as? [[String: Any]])
        let targets = try #require(json["targets"] as? [[String: Any]])
        let ids = (ratios + targets).compactMap { $0["id"] as? String }
        #expect(ids.count == ratios.count + targets.count && Set(ids).count == ids.count, "ids missing or repeated: \(ids)")
        for id in ["pooled_acquire_release", "pooled_vs_boost_pool", "pooled_two_threads", "scheduler_startup", "empty_job",
                   "fan_out_vs_taskgroup", "fan_out_vs_dispatch", "fan_out_vs_boost_fiber", "switch_vs_boost",
                   "single_stack_vs_c", "lightweight_vs_mprotect", "hugetlb_prefault_vs_c", "capacity_create", "switch_checked",
                   "capacity_create_vs_c", "capacity_release_vs_c"] {
            #expect(ids.contains(id), "target \(id) missing")
        }
        for ratio in ratios {
            let bound = try #require(ratio["max_ratio"] as? Double)
            #expect(ratio["status"] as? String == Self.status(ratio["ratio"] as? Double, atMost: bound), "\(ratio)")
            #expect(ratio["met"] as? Bool == (ratio["status"] as? String == "met"), "\(ratio)")
            #expect(ratio["target"] is String && ratio["ours"] is String && ratio["versus"] is String)
        }
        for target in targets {
            let bound = try #require(target["max_value"] as? Double)
            #expect(target["status"] as? String == Self.status(target["value"] as? Double, atMost: bound), "\(target)")
        }
        let picture = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(picture.hasPrefix("<svg") && picture.contains("</svg>"))
        for id in ids { #expect(picture.contains(">\(id)<"), "\(id) not drawn") }
    }

    @Test("bench --section runs only the sections named; the table goes to standard output, the JSON to --output")
    func sectionSubset() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-bench-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, table) = try runTool(["bench", "--quick", "--section", "context_switch", "--section", "tlb", "--output", path])
        #expect(status == 0)
        #expect(table.contains("context_switch/scheduler_yield") && table.contains("tlb/small_4k"), "\(table)")
        #expect(!table.contains("  stack_alloc/mmap_lightweight"), "\(table)")  // a row of ours (the ratios name it too)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let results = try #require(json["results"] as? [[String: Any]])
        #expect(json["sections"] as? [String] == ["context_switch", "tlb"])
        #expect(Set(results.compactMap { $0["section"] as? String }).isSubset(of: ["context_switch", "tlb"]))
        #expect(results.contains { $0["name"] as? String == "scheduler_yield" })
    }

    @Test("bench rejects a non-positive repetition count, an unknown section and a report file it cannot write with exit 64",
          arguments: [["bench", "--reps", "0"], ["bench", "--section", "no_such_section"],
                      ["bench", "--quick", "--section", "frames", "--output", ""],
                      ["bench", "--quick", "--section", "frames", "--svg", ""],
                      ["bench", "--quick", "--section", "frames", "--output", "/proc/version"]])
    func badArguments(_ arguments: [String]) throws {
        #expect(try runTool(arguments).status == 64)
    }

    @Test("bench --output to a FIFO that no process reads is a usage error before any benchmark runs, not a hang at the end")
    func outputToUnreadFIFO() throws {
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-bench-\(UUID().uuidString).fifo").path
        try #require(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let run = try runFiberstacks(["bench", "--quick", "--section", "frames", "--output", fifo], timeLimit: 60)
        #expect(run.status == 64 && run.standardError.contains("FIFO"), "\(run.standardError)")
        #expect(!run.standardError.contains("bench: frames"), "a benchmark ran first: \(run.standardError)")
    }

    @Test("bench --output to a FIFO that a process reads delivers the whole report there")
    func outputToReadFIFO() throws {
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-bench-\(UUID().uuidString).fifo").path
        try #require(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let reader = open(fifo, O_RDONLY | O_NONBLOCK)
        try #require(reader >= 0)
        defer { close(reader) }
        let run = try runFiberstacks(["bench", "--quick", "--section", "frames", "--output", fifo], timeLimit: 60)
        #expect(run.status == 0, "\(run.standardError)")
        // The report of one section fits in the pipe's buffer (64 KiB), so the writer never waited.
        var report = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while case let count = read(reader, &buffer, buffer.count), count > 0 { report.append(contentsOf: buffer[..<count]) }
        let json = try JSONSerialization.jsonObject(with: report) as? [String: Any]
        #expect(json?["sections"] as? [String] == ["frames"], "\(String(decoding: report, as: UTF8.self))")
    }

    @Test("bench --section suspended: with Go 1.18+ on PATH, the Go peer is measured beside ours (same jobs and workers, the same extra figures, a ratio); otherwise skipped saying why")
    func goPeer() throws {
        let run = try SuspendedRun(environment: [:])
        let goVersion = try Self.usableGoVersion()
        guard let go = run.named("go_goroutines", in: "peers") else {
            let reason = try #require(run.named("go_goroutines", in: "skipped")?["reason"] as? String, "neither measured nor skipped")
            #expect(goVersion == nil, "\(goVersion ?? "") is on PATH, yet the Go peer was skipped: \(reason)")
            #expect(reason.contains("golang-go"), "\(reason)")
            return
        }
        #expect(goVersion != nil && run.named("go_goroutines", in: "skipped") == nil)
        let ours = try #require(run.named("suspended_jobs", in: "results"))
        #expect(go["params"] as? [String: Int] == ["jobs": 1000, "workers": 2], "\(go)")
        #expect((go["unmatched"] as? [String])?.contains { $0.hasPrefix("size: ") } == true, "\(go)")
        let goExtra = try #require(go["extra"] as? [String: Double])
        let ourExtra = try #require(ours["extra"] as? [String: Double])
        #expect(Set(goExtra.keys) == Set(ourExtra.keys), "\(goExtra) vs \(ourExtra)")
        // Figures a child really measured: it started and released every goroutine, and each costs memory.
        #expect(goExtra["jobs"] == 1000 && goExtra["suspend_s"] == go["median"] as? Double, "\(go)")
        #expect((goExtra["resume_s"] ?? 0) > 0 && (goExtra["rss_per_fiber_bytes"] ?? 0) > 512, "\(goExtra)")
        let ratio = try #require(run.ratio("suspended_vs_go")["ratio"] as? Double)
        let expected = (ours["median"] as? Double ?? 0) / (go["median"] as? Double ?? 1)
        #expect(abs(ratio - expected) <= 1e-9 * expected, "\(ratio) vs \(expected)")
        // Without HOME or a Go cache, go build caches in the run's temporary directory and still succeeds.
        let homeless = try SuspendedRun(environment: ["HOME": "", "GOCACHE": "", "GOPATH": "", "XDG_CACHE_HOME": ""])
        #expect(homeless.named("go_goroutines", in: "peers") != nil, "\(homeless.named("go_goroutines", in: "skipped") ?? [:])")
    }

    /// The version of the `go` on PATH ("go1.19.8") when it is Go 1.18 or newer, which the Go peer needs;
    /// nil without one.
    static func usableGoVersion() throws -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        guard let go = path.split(separator: ":").map({ "\($0)/go" }).first(where: FileManager.default.isExecutableFile) else {
            return nil
        }
        let version = try ChildProcess.run(go, ["env", "GOVERSION"], timeLimit: 60).standardOutput
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let numbers = version.dropFirst(2).split(separator: ".").prefix(2).compactMap { Int($0) }
        return version.hasPrefix("go") && numbers.count == 2 && (numbers[0], numbers[1]) >= (1, 18) ? version : nil
    }

    /// A `go` that fails as the compiler does, and one whose program exits 1.
    static let brokenGo = [
        "echo '# fiberstacks/gopeer' >&2; echo './main.go:7:2: undefined: brokenOnPurpose' >&2; exit 1",
        "printf '#!/bin/sh\\necho \"gopeer: failing on purpose\" >&2; exit 1\\n' > \"$3\"; /bin/chmod +x \"$3\"",
    ]

    @Test("bench --section suspended: without go on PATH the Go peer is a skip naming golang-go; a failed build or run, one naming its first error line",
          arguments: [nil] + brokenGo)
    func goPeerSkips(_ fakeGo: String?) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-go-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        if let fakeGo {
            try writeExecutable(Data("#!/bin/sh\n\(fakeGo)\n".utf8), to: "\(directory)/go")
        }
        // PATH holds the fake go alone (or nothing); the scripts use shell builtins and absolute paths.
        let run = try SuspendedRun(environment: ["PATH": directory])
        #expect(run.named("go_goroutines", in: "peers") == nil)
        let reason = try #require(run.named("go_goroutines", in: "skipped")?["reason"] as? String)
        if fakeGo == nil {
            #expect(reason.contains("go is not installed") && reason.contains("apt-get install golang-go"), "\(reason)")
        } else if fakeGo == Self.brokenGo[0] {
            #expect(reason.contains("go build of the Go peer") && reason.contains("./main.go:7:2: undefined: brokenOnPurpose"), "\(reason)")
        } else {
            #expect(reason.contains("the Go peer failed, exit 1: gopeer: failing on purpose"), "\(reason)")
        }
        #expect(run.ratio("suspended_vs_go")["status"] as? String == "not_evaluated")
    }

    /// The JSON of `bench --quick --section suspended --json`, run with `environment` added.
    struct SuspendedRun {
        let json: [String: Any]

        init(environment: [String: String]) throws {
            let run = try runFiberstacks(["bench", "--quick", "--section", "suspended", "--json"], environment: environment)
            #expect(run.status == 0, "\(run.standardError)")
            json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any], "\(run.output)")
        }

        /// The entry called `name` in the list `key` (results, peers, skipped).
        func named(_ name: String, in key: String) -> [String: Any]? {
            (json[key] as? [[String: Any]])?.first { $0["name"] as? String == name }
        }

        /// The ratio `id` (empty when missing, so its fields read as absent).
        func ratio(_ id: String) -> [String: Any] {
            (json["ratios"] as? [[String: Any]])?.first { $0["id"] as? String == id } ?? [:]
        }
    }

    /// The status a target must have: met or missed by its figure, or not evaluated without one. Like
    /// `bench`, it forgives rounding (1e-9 relative): a ratio at its bar meets it, and Foundation's JSON
    /// reader returns doubles a unit or two off what was written.
    static func status(_ figure: Double?, atMost bound: Double) -> String {
        guard let figure else { return "not_evaluated" }
        return figure <= bound * (1 + 1e-9) ? "met" : "missed"
    }
}
