import ArgumentParser
import StackAllocators

/// `fiberstacks verify`: allocates stacks with every allocator this machine supports and proves, with
/// the kernel's own answers, that guards are inaccessible, prefault did what it says, and release unmaps.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prove guards, prefault and release on this machine (exit 0: all passed, 1: a check failed).")

    @Flag(help: "Print {\"passed\", \"checks\": [...]} as JSON instead of a table.")
    var json = false

    func run() throws {
        var report = VerifyReport()
        MmapChecks.run(into: &report)
        NUMAChecks.run(into: &report)
        SlabChecks.run(into: &report)
        PooledChecks.run(into: &report)
        HugePageChecks.run(into: &report)
        OverflowChecks.run(into: &report)
        SchedulerChecks.run(into: &report)
        if json {
            print(try encodeJSON(report))
        } else {
            printReport(report)
        }
        if !report.passed { throw ExitCode(1) }
    }

    private func printReport(_ report: VerifyReport) {
        let nameWidth = report.checks.map(\.name.count).max() ?? 0
        let allocatorWidth = report.checks.map(\.allocator.count).max() ?? 0
        for check in report.checks {
            print(
                (check.passed ? "PASS  " : "FAIL  ")
                    + check.allocator.padding(toLength: allocatorWidth, withPad: " ", startingAt: 0) + "  "
                    + check.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  " + check.detail)
        }
        let failed = report.checks.filter { !$0.passed }.count
        print("\(report.checks.count - failed) passed, \(failed) failed")
    }
}

/// One verified property.
struct VerifyCheck: Codable {
    let name: String
    let allocator: String
    let passed: Bool
    let detail: String
}

/// Everything `verify` found.
struct VerifyReport: Codable {
    private(set) var checks: [VerifyCheck] = []
    var passed: Bool { checks.allSatisfy(\.passed) }

    /// Records a check.
    mutating func add(_ name: String, _ allocator: String, _ passed: Bool, _ detail: String) {
        checks.append(VerifyCheck(name: name, allocator: allocator, passed: passed, detail: detail))
    }

    /// Runs `body`, recording its result, or a failed check naming the error it threw.
    mutating func check(_ name: String, _ allocator: String, _ body: () throws -> (Bool, String)) {
        do {
            let (passed, detail) = try body()
            add(name, allocator, passed, detail)
        } catch {
            add(name, allocator, false, "error: \(error)")
        }
    }

    enum CodingKeys: String, CodingKey { case passed, checks }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(passed, forKey: .passed)
        try container.encode(checks, forKey: .checks)
    }

    init() {}

    init(from decoder: Decoder) throws {
        checks = try decoder.container(keyedBy: CodingKeys.self).decode([VerifyCheck].self, forKey: .checks)
    }
}

/// Checks every allocator-independent property of one live stack: its guard and its residency.
enum StackChecks {
    /// Allocates one stack for `request`, checks it, releases it, and (when `unmapsOnRelease`) checks
    /// that the guard and the usable range are gone.
    static func runLifecycle(
        _ allocator: any StackAllocator, name: String, request: StackRequest, unmapsOnRelease: Bool = true,
        into report: inout VerifyReport
    ) {
        let strategy = request.prefault.strategy
        let stack: Stack
        do {
            stack = try allocator.allocate(request)
        } catch {
            report.add("allocate/\(strategy)", name, false, "error: \(error)")
            return
        }
        run(stack, allocator: name, prefault: strategy, into: &report)
        let whole = stack.descriptor.layout.base..<stack.descriptor.layout.top
        stack.release()
        if unmapsOnRelease {
            report.check("release-unmaps/\(strategy)", name) {
                (try Probe.isUnmapped(whole), "guard and usable range unmapped after release (mincore: ENOMEM)")
            }
        }
    }

    /// Probes `stack` and records whether its guard is sound and its residency matches `prefault`.
    static func run(_ stack: borrowing Stack, allocator: String, prefault: PrefaultStrategy, into report: inout VerifyReport) {
        report.check("guard-inaccessible/\(prefault)", allocator) {
            let probe = try StackProbeReport(layout: stack.descriptor.layout)
            return (
                probe.guardIsSound,
                "\(probe.guardPages) guard pages (\(stack.guardMechanism)): \(probe.accessibleGuardPages) readable, "
                    + "\(probe.residentGuardPages) resident")
        }
        report.check("prefault-\(prefault)", allocator) {
            let probe = try StackProbeReport(layout: stack.descriptor.layout)
            let resident = probe.residentUsablePages
            let expected = prefault == .none ? "at most 1" : "all \(probe.usablePages)"
            let passed = probe.residentGuardPages == 0
                && (prefault == .none ? resident <= 1 : resident == probe.usablePages)
            return (passed, "\(resident)/\(probe.usablePages) usable pages resident (expected \(expected)), "
                + "\(probe.residentGuardPages) guard pages resident")
        }
    }
}
