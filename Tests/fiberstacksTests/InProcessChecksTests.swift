import StackDiagnostics
import StackTestSupport
import Testing

@Suite("verify's checks run in-process")
struct InProcessChecksTests {
    @Test("Guard faults and NUMA read-backs from a test bundle: children are the fiberstacks next to it", needsNoSanitizer)
    func guardFaultsAndPlacement() {
        var report = VerifyReport()
        GuardFaultChecks.run(into: &report)
        NUMAChecks.run(into: &report)
        let faults = report.checks.filter { $0.name == "guard-fault" }
        for allocator in ["mmap/mprotect", "slab/mprotect", "pool/mmap"] {
            #expect(faults.contains { $0.allocator == allocator && $0.status == .pass }, "\(allocator): \(faults)")
        }
        #expect(report.checks.contains { $0.name == "bind-node0" && $0.status == .pass })
    }
}
