import Foundation
import StackTestSupport
import Testing

@Suite("Overflow detection through the fiberstacks command")
struct OverflowCommandTests {
    /// The Swift runtime's backtracer on, as it is by default outside exit tests.
    static let backtracer = ["SWIFT_BACKTRACE": "enable=yes,interactive=no,threads=crashed,registers=none,images=none"]

    @Test("A null dereference still reaches the Swift runtime's backtracer: same signal, same crash report", needsNoSanitizer)
    func chainsToSwiftBacktracer() throws {
        let with = try runFiberstacks(["overflow-child", "--fault", "null"], environment: Self.backtracer)
        let without = try runFiberstacks(["overflow-child", "--fault", "null", "--no-handler"], environment: Self.backtracer)
        #expect(without.signal == SIGSEGV)
        #expect(with.signal == SIGSEGV)
        let report = "Program crashed: Bad pointer dereference at 0x0000000000000008"
        #expect(without.standardError.contains(report), "\(without.standardError.prefix(500))")
        #expect(with.standardError.contains(report), "\(with.standardError.prefix(500))")
        #expect(!with.standardError.contains("stack overflow"))
    }

    @Test("An overflow with the Swift backtracer on is still named, and still dies by SIGSEGV")
    func overflowWithBacktracer() throws {
        let child = try runFiberstacks(["overflow-child", "--label", "job-17@worker-1"], environment: Self.backtracer)
        #expect(child.signal == SIGSEGV)
        #expect(child.standardError.contains(#"fiberstacks: stack overflow in fiber "job-17@worker-1" (thread "#))
        #expect(child.standardError.contains(#""fs-worker-1"): fault at 0x"#))
    }

    @Test("verify runs the overflow checks and they pass; the child command is hidden from help", needsNoSanitizer)
    func verifyRows() throws {
        let (status, output) = try runTool(["verify", "--json", "--million-stacks", "100000"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]])
        let overflow = checks.filter { $0["allocator"] as? String == "overflow" }
        let names = Set(overflow.compactMap { $0["name"] as? String })
        #expect(names.isSuperset(of: ["overflow-diagnostic/mprotect", "foreign-fault-chains", "canary", "high-water-mark"]))
        for check in overflow {
            #expect(check["status"] as? String == "pass" || check["capability"] as? String == "lightweight-guards", "\(check)")
        }
        // Every allocator's guard faulted in a child, with the diagnostic at the exact distance.
        let faults = checks.filter { $0["name"] as? String == "guard-fault" }
        let allocators = Set(faults.compactMap { $0["allocator"] as? String })
        #expect(allocators.isSuperset(of: ["mmap/mprotect", "slab/mprotect", "pool/mmap", "huge/anonymous", "huge/packed-anonymous"]))
        for check in faults {
            #expect(check["status"] as? String == "pass" || check["status"] as? String == "skip", "\(check)")
        }
        #expect(status == 0)
        #expect(try !runTool(["--help"]).output.contains("overflow-child"))
    }
}
