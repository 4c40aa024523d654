import CSandbox
import Foundation
import Glibc
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// A container whose seccomp profile refuses madvise(2) altogether (EPERM): what cannot work there is named
/// as the profile's doing, never as a missing kernel feature, and never left unexplained.
@Suite("madvise refused by a seccomp profile, seen by the tool", needsNoSanitizer)
struct RefusedAdviceCommandTests {
    @Test("doctor marks each advice refused, and every row verify fails names the profile")
    func everyFailureNamed() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            ensure(fs_test_refuse_madvise(EPERM) == 0, "seccomp: errno \(errno)")
            let doctor = try ChildProcess.run(fiberstacksBinary, ["doctor", "--json"], timeLimit: 60)
            let machine = try JSONSerialization.jsonObject(with: Data(doctor.standardOutput.utf8)) as? [String: Any] ?? [:]
            for key in ["lightweight_guards", "populate_write", "discards", "transparent_huge_page_advice"] {
                ensure(machine[key] as? Bool == false, "\(key): \(String(describing: machine[key])) in \(doctor.standardOutput)")
            }
            let run = try ChildProcess.run(fiberstacksBinary, ["verify", "--json", "--million-stacks", "100000"], timeLimit: 600)
            let json = try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any]
            let checks = json?["checks"] as? [[String: Any]] ?? []
            let failed = checks.filter { $0["status"] as? String == "fail" }
            ensure(!checks.isEmpty && !failed.isEmpty, "nothing failed with madvise refused: \(run.standardError)")
            let unexplained = failed.filter { !($0["detail"] as? String ?? "").contains("a seccomp filter or sandbox refuses madvise(2)") }
            ensure(unexplained.isEmpty, "\(unexplained)")
        }
    }
}
