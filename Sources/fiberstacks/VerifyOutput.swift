import Foundation
import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import StackDiagnostics
import Synchronization

/// What `verify` prints: a table row as each check ends (standard output flushed), or one JSON document
/// at the end; the last table line is `N passed, N failed, N skipped`.
final class VerifyOutput: Sendable {
    private let json: Bool
    private let checks: Mutex<VerifyReport>

    init(json: Bool, required: Set<Capability>) {
        self.json = json
        var report = VerifyReport()
        report.required = required
        checks = Mutex(report)
    }

    /// Records `check`, and prints its row in table mode.
    func print(_ check: VerifyCheck) {
        checks.withLock { $0.append(check) }
        guard !json else { return }
        let status = switch check.status {
        case .pass: "PASS"
        case .fail: "FAIL"
        case .skip: "SKIP"
        }
        let capability = check.capability.map { " [\($0.rawValue)]" } ?? ""
        write(status + "  " + pad(check.allocator, 26) + "  " + pad(check.name, 34) + "  " + check.detail + capability + "\n")
    }

    /// Prints the summary line (table) or the whole document (JSON).
    func finish() throws {
        let report = checks.withLock { $0 }
        if json {
            write(try encodeJSON(VerifyDocument(report: report, kernel: kernelRelease)) + "\n")
        } else {
            write("\(report.count(.pass)) passed, \(report.count(.fail)) failed, \(report.count(.skip)) skipped\n")
        }
    }

    /// Records the check that ran past its limit, prints everything, and exits 1.
    func finishAfterTimeout(_ check: VerifyCheck) -> Never {
        print(check)
        do { try finish() } catch { FileStream.standardError.writeLine("verify: the report cannot be encoded: \(error)") }
        _exit(1)
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    private func write(_ text: String) { FileStream.standardOutput.write(text) }
}
