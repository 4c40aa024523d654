import Foundation
import StackTestSupport
import Testing

@Suite("The fiberstacks command: huge pages")
struct HugePageCommandTests {
    @Test("verify covers every huge-page backing: checked, or skipped with the reason", needsNoThreadSanitizer)
    func verifyCoversBackings() throws {
        let (status, output) = try runTool(["verify", "--json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]])
        #expect(status == 0, "\(output)")
        let huge = checks.filter { ($0["allocator"] as? String)?.hasPrefix("huge") == true }
        for backing in ["huge/anonymous-", "huge/hugetlbfs-", "huge/transparent", "huge/packed"] {
            #expect(huge.contains { ($0["allocator"] as? String)?.hasPrefix(backing) == true }, "no check for \(backing)")
        }
        for check in huge where (check["detail"] as? String)?.hasPrefix("skipped:") == true {
            let detail = check["detail"] as? String ?? ""
            #expect(detail.contains("/") || detail.contains("mount"), "a skip must name what is missing: \(detail)")
        }
        #expect(huge.contains { $0["name"] as? String == "exhaustion-strict" || ($0["detail"] as? String)?.hasPrefix("skipped:") == true })
    }

    @Test("doctor reports transparent huge page size and defrag mode, and pool surplus counters")
    func doctor() throws {
        let (status, output) = try runTool(["doctor", "--json"])
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let pools = try #require(json["hugePagePools"] as? [[String: Any]])
        for pool in pools {
            #expect(pool["surplus"] as? Int != nil && pool["controlFile"] as? String != nil)
        }
        if json["transparentHugePages"] as? String != nil {
            #expect((json["transparentHugePageSize"] as? Int ?? 0) > 0)
        }
    }

    @Test("bench-huge runs (tiny sizes) and prints both tables")
    func bench() throws {
        let (status, output) = try runTool(["bench-huge", "--prefault-mib", "2", "--repeats", "1", "--stacks", "8", "--rounds", "1"])
        #expect(status == 0)
        #expect(output.contains("| 4 KiB | MADV_POPULATE_WRITE |") && output.contains("| 2 MiB hugetlb, packed |"), "\(output)")
    }
}
