import Foundation
import StackTestSupport
import Testing

/// Exit status and standard output of the built `fiberstacks` binary run with `arguments`.
func runTool(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let run = try runFiberstacks(arguments)
    return (run.status, run.output)
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
    /// Every section `fiberstacks bench` has (the JSON `section` values).
    static let sections = ["stack_alloc", "pooled", "prefault", "context_switch", "scheduler", "tlb", "numa", "capacity", "frames"]

    @Test("bench --quick --json is well-formed: every section measured or skipped with a reason, ratios judged")
    func quickJSON() throws {
        let (status, output) = try runTool(["bench", "--quick", "--json"])
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], "\(output)")
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
            // Capacity and the frame audit are measured once; everything else 3 times under --quick.
            let once = ["capacity", "frames"].contains(result["section"] as? String ?? "")
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
        // Either the peers ran in the same invocation, or the report says why not.
        #expect(json["peers"] is [[String: Any]] || json["peers_skipped"] is String)
        for ratio in try #require(json["ratios"] as? [[String: Any]]) {
            let (value, bound) = (try #require(ratio["ratio"] as? Double), try #require(ratio["max_ratio"] as? Double))
            #expect(ratio["met"] as? Bool == (value <= bound), "\(ratio)")
            #expect(ratio["target"] is String && ratio["ours"] is String && ratio["versus"] is String)
        }
        for target in try #require(json["targets"] as? [[String: Any]]) {
            let (median, bound) = (try #require(target["median"] as? Double), try #require(target["max_median"] as? Double))
            #expect(target["met"] as? Bool == (median <= bound), "\(target)")
        }
    }

    @Test("bench --section runs only the sections named; the table goes to standard output, the JSON to --output")
    func sectionSubset() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-bench-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, table) = try runTool(["bench", "--quick", "--section", "context_switch", "--section", "tlb", "--output", path])
        #expect(status == 0)
        #expect(table.contains("context_switch/scheduler_yield") && table.contains("tlb/small_4k"), "\(table)")
        #expect(!table.contains("stack_alloc/mmap_lightweight"), "\(table)")  // ours; the peers run for context_switch
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let results = try #require(json["results"] as? [[String: Any]])
        #expect(json["sections"] as? [String] == ["context_switch", "tlb"])
        #expect(Set(results.compactMap { $0["section"] as? String }).isSubset(of: ["context_switch", "tlb"]))
        #expect(results.contains { $0["name"] as? String == "scheduler_yield" })
    }

    @Test("bench rejects a non-positive repetition count and an unknown section with exit 2",
          arguments: [["bench", "--reps", "0"], ["bench", "--section", "no_such_section"]])
    func badArguments(_ arguments: [String]) throws {
        #expect(try runTool(arguments).status == 2)
    }
}
