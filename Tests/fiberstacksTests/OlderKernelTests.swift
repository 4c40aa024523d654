import CSandbox
import Foundation
import Glibc
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// A kernel older than 6.13, which most machines still run: `MADV_GUARD_INSTALL` refused with EINVAL, as
/// a seccomp filter makes this kernel do, and every guard an mprotect guard.
@Suite("A kernel without MADV_GUARD_INSTALL", needsNoSanitizer)
struct OlderKernelTests {
    @Test("verify passes with mprotect guards alone and skips the lightweight checks, naming the kernel they need")
    func verifyPasses() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            precondition(fs_test_refuse_guard_advice() == 0, "seccomp: errno \(errno)")
            // The filter holds for the child too.
            let run = try ChildProcess.run(fiberstacksBinary, ["verify", "--json", "--million-stacks", "100000"], timeLimit: 600)
            let json = try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any]
            let checks = json?["checks"] as? [[String: Any]] ?? []
            let failed = checks.filter { $0["status"] as? String == "fail" }
            precondition(run.status == 0 && failed.isEmpty && !checks.isEmpty, "exit \(String(describing: run.status)): \(failed)\(run.standardError)")
            let lightweight = checks.filter { $0["capability"] as? String == "lightweight-guards" }
            precondition(!lightweight.isEmpty && lightweight.allSatisfy {
                $0["status"] as? String == "skip" && ($0["detail"] as? String ?? "").contains("needs Linux >= 6.13")
            }, "\(lightweight)")
            let guarded = checks.filter { ($0["allocator"] as? String ?? "").hasSuffix("/mprotect") && $0["status"] as? String == "pass" }
            precondition(guarded.count >= 10, "\(guarded.count) mprotect checks passed")
        }
    }
}
