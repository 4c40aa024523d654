import CSandbox
import Foundation
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackAllocators
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

@Suite("The fiberstacks command: huge pages")
struct HugePageCommandTests {
    @Test("verify covers every huge-page backing: checked, or skipped naming the capability and what is missing", needsNoSanitizer)
    func verifyCoversBackings() throws {
        let (status, output) = try runTool(["verify", "--json", "--million-stacks", "100000"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]])
        #expect(status == 0, "\(output)")
        let huge = checks.filter { ($0["allocator"] as? String)?.hasPrefix("huge") == true }
        for backing in ["huge/anonymous-", "huge/hugetlbfs-", "huge/transparent", "huge/packed"] {
            #expect(huge.contains { ($0["allocator"] as? String)?.hasPrefix(backing) == true }, "no check for \(backing)")
        }
        for check in huge where check["status"] as? String == "skip" {
            let detail = check["detail"] as? String ?? ""
            #expect(detail.contains("/") || detail.contains("mount"), "a skip must name what is missing: \(detail)")
            #expect(["hugetlb-anonymous", "hugetlbfs", "gigantic-pages", "thp"].contains(check["capability"] as? String), "\(check)")
        }
        // With a default-size pool, exhaustion-strict must have run and passed; without one, the
        // exhaustion row is a skip naming the missing pool. Nothing else will do.
        let strict = huge.first { $0["name"] as? String == "exhaustion-strict" }
        if HugePageSystem.hugePagePool(pageSize: HugePageSystem.defaultHugePageSize()) != nil {
            #expect(strict?["status"] as? String == "pass", "exhaustion-strict: \(String(describing: strict))")
        } else {
            let skip = huge.first { $0["name"] as? String == "exhaustion" }
            #expect(strict == nil && skip?["status"] as? String == "skip" && skip?["capability"] as? String == "hugetlb-anonymous",
                    "\(String(describing: skip))")
        }
    }

    @Test("Where a parent turned transparent huge pages off (PR_SET_THP_DISABLE), verify skips the THP checks naming it and doctor says so",
          .enabled(if: ["madvise", "always"].contains(HugePageSystem.transparentHugePageMode() ?? "never"), "needs THP mode madvise or always"))
    func transparentOffInProcess() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            ensure(fs_test_disable_transparent_huge_pages() == 0, "prctl(PR_SET_THP_DISABLE) failed")
            let verify = try runFiberstacks(["verify", "--json", "--million-stacks", "1000"])
            ensure(verify.status == 0, "verify exited \(verify.status): \(verify.output)")
            let checks = (try JSONSerialization.jsonObject(with: Data(verify.output.utf8)) as? [String: Any])?["checks"] as? [[String: Any]]
            let transparent = (checks ?? []).filter { ($0["allocator"] as? String ?? "").contains("transparent") }
            ensure(!transparent.isEmpty, "no transparent huge page check: \(verify.output)")
            for check in transparent {
                ensure(check["status"] as? String == "skip" && check["capability"] as? String == "thp"
                    && (check["detail"] as? String ?? "").contains("PR_SET_THP_DISABLE"), "\(check)")
            }
            let doctor = try runFiberstacks(["doctor"])
            ensure(doctor.output.contains("off for this process") && doctor.output.contains("PR_SET_THP_DISABLE"), doctor.output)
        }
    }

    @Test("A user who cannot write the hugetlbfs mount: verify skips that backing naming the mount and the chmod, doctor says libhugetlbfs ignores it, nothing fails",
          needsNoSanitizer, needsHugeTLBMountClosedToUnprivilegedUser,
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs setpriv (util-linux)"))
    func unwritableMount() throws {
        // A copy that the unprivileged user can run: the build directory may sit below a directory closed to it.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-nobody-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(at: directory) }
        let binary = directory.appendingPathComponent("fiberstacks").path
        try writeExecutable(Data(contentsOf: URL(fileURLWithPath: fiberstacksBinary)), to: binary)
        func asNobody(_ arguments: [String]) throws -> ChildProcess.Outcome {
            func run() throws -> ChildProcess.Outcome {
                try ChildProcess.run(
                    "/usr/bin/setpriv", ["--reuid=\(unprivilegedUser)", "--regid=\(unprivilegedUser)", "--clear-groups", binary] + arguments,
                    workingDirectory: directory.path, timeLimit: 300)
            }
            // A child another test spawned while the copy was open holds it until that child execs, and
            // exec fails with ETXTBSY meanwhile: a moment later it runs.
            var (outcome, tries) = (try run(), 1)
            while outcome.status == 126, outcome.standardError.contains("Text file busy"), tries < 20 {
                usleep(50_000)
                (outcome, tries) = (try run(), tries + 1)
            }
            return outcome
        }
        let mount = hugeTLBMountsClosedToUnprivilegedUser[0]
        let verify = try asNobody(["verify", "--json", "--million-stacks", "100000"])
        #expect(verify.status == 0, "\(verify.standardOutput)\(verify.standardError)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(verify.standardOutput.utf8)) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]])
        let name = "huge/hugetlbfs-\(formatByteCount(HugePageSystem.defaultHugePageSize()))"
        let backing = try #require(checks.first { $0["allocator"] as? String == name && $0["name"] as? String == "backing" }, "\(checks)")
        let detail = backing["detail"] as? String ?? ""
        #expect(backing["status"] as? String == "skip" && backing["capability"] as? String == "hugetlbfs", "\(backing)")
        #expect(detail.contains(mount) && detail.contains("uid \(unprivilegedUser) can write") && detail.contains("chmod 1777 \(mount)"), "\(detail)")
        let doctor = try asNobody(["doctor", "--json"])
        let machine = try #require(try JSONSerialization.jsonObject(with: Data(doctor.standardOutput.utf8)) as? [String: Any])
        let mounts = try #require(machine["huge_tlb_mounts"] as? [[String: Any]], "\(doctor.standardOutput)")
        #expect(mounts.contains { $0["path"] as? String == mount && $0["writable"] as? Bool == false }, "\(mounts)")
    }

    @Test("doctor reports transparent huge page size and defrag mode, and pool surplus counters")
    func doctor() throws {
        let (status, output) = try runTool(["doctor", "--json"])
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let pools = try #require(json["huge_page_pools"] as? [[String: Any]])
        for pool in pools {
            #expect(pool["surplus"] as? Int != nil && pool["control_file"] as? String != nil)
        }
        if json["transparent_huge_pages"] as? String != nil {
            #expect((json["transparent_huge_page_size"] as? Int ?? 0) > 0)
        }
    }

    @Test("bench measures huge-page prefault and the TLB round-robin, or says why not", .enabled(if: benchmarksBuilt, Comment(rawValue: benchmarksMissing)))
    func bench() throws {
        let (status, output) = try runTool(["bench", "--quick", "--json", "--section", "prefault", "--section", "tlb"])
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], "\(output)")
        let results = try #require(json["results"] as? [[String: Any]])
        let skipped = try #require(json["skipped"] as? [[String: Any]])
        for name in ["alloc_hugetlb_2m", "alloc_hugetlbfs_2m", "alloc_thp_2m", "hugetlb_packed", "thp_packed"] {
            let skip = skipped.first { $0["name"] as? String == name }
            #expect(results.contains { $0["name"] as? String == name } || skip != nil, "\(name) neither measured nor skipped")
            if let reason = skip?["reason"] as? String {
                #expect(reason.contains("/") || reason.contains("mount"), "a skip must name what is missing: \(reason)")
            }
        }
        for control in ["small_4k", "small_packed"] {
            #expect(results.contains { $0["name"] as? String == control && ($0["params"] as? [String: Int])?["stride"] == 4096 })
        }
    }
}
