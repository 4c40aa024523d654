import CSandbox
import Foundation
import Glibc
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// Kernels older than the one this suite runs on, which most machines still run: the advices they lack
/// refused with EINVAL, as a seccomp filter makes this kernel do. `verify` must pass there, skipping what
/// needs the newer kernel and naming the version.
@Suite("Kernels without the newest madvise advices", needsNoSanitizer)
struct OlderKernelTests {
    @Test("Before Linux 6.13: verify passes with mprotect guards alone and skips the lightweight checks, naming the kernel they need")
    func verifyPassesBefore613() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            ensure(fs_test_refuse_guard_advice() == 0, "seccomp: errno \(errno)")
            let checks = try OlderKernelTests.verifyWithoutFailures()
            OlderKernelTests.expectSkipped(checks, ["lightweight-guards"], naming: "needs Linux >= 6.13")
            let guarded = checks.filter { ($0["allocator"] as? String ?? "").hasSuffix("/mprotect") && $0["status"] as? String == "pass" }
            ensure(guarded.count >= 10, "\(guarded.count) mprotect checks passed")
        }
    }

    @Test("Before Linux 5.14 (Debian 11's 5.10, say): verify also skips the hugetlb checks, naming MADV_POPULATE_WRITE")
    func verifyPassesBefore514() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let newer = [FS_TEST_MADV_POPULATE_READ, FS_TEST_MADV_POPULATE_WRITE, FS_TEST_MADV_GUARD_INSTALL, FS_TEST_MADV_GUARD_REMOVE]
            ensure(fs_test_refuse_advice(EINVAL, newer.map(Int32.init), Int32(newer.count)) == 0, "seccomp: errno \(errno)")
            let checks = try OlderKernelTests.verifyWithoutFailures()
            OlderKernelTests.expectSkipped(checks, ["lightweight-guards"], naming: "needs Linux >= 6.13")
            OlderKernelTests.expectSkipped(
                checks, ["hugetlb-anonymous", "hugetlbfs", "gigantic-pages"], naming: "MADV_POPULATE_WRITE needs Linux >= 5.14")
        }
    }

    /// The checks of `verify --json` (a shorter capacity check) run as a child, which inherits the filter;
    /// stops the test when any failed.
    static func verifyWithoutFailures() throws -> [[String: Any]] {
        let run = try ChildProcess.run(fiberstacksBinary, ["verify", "--json", "--million-stacks", "100000"], timeLimit: 600)
        let json = try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any]
        let checks = json?["checks"] as? [[String: Any]] ?? []
        let failed = checks.filter { $0["status"] as? String == "fail" }
        precondition(run.status == 0 && failed.isEmpty && !checks.isEmpty, "exit \(String(describing: run.status)): \(failed)\(run.standardError)")
        return checks
    }

    /// Stops the test unless some check needs one of `capabilities` and every such check that did not
    /// pass was skipped with a detail that contains `reason`.
    static func expectSkipped(_ checks: [[String: Any]], _ capabilities: Set<String>, naming reason: String) {
        let needing = checks.filter { capabilities.contains($0["capability"] as? String ?? "") && $0["status"] as? String != "pass" }
        precondition(!needing.isEmpty && needing.allSatisfy {
            $0["status"] as? String == "skip" && ($0["detail"] as? String ?? "").contains(reason)
        }, "\(needing)")
    }
}
