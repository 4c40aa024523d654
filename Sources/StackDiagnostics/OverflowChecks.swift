import Glibc
import SystemPackage
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import OverflowDetection
import StackAllocators

/// `verify` for overflow detection: a child process that overflows a labelled guarded stack on a
/// secondary thread must die by SIGSEGV with the diagnostic naming that label; a null dereference must
/// die exactly as it would without our handler; canaries and high-water marks must measure what happened.
package enum OverflowChecks {
    package static func run(into report: inout VerifyReport) {
        for mode in [GuardMode.lightweight, .protNone] {
            if let missing = alternateStackMissing {
                report.skip("overflow-diagnostic/\(mode)", "overflow", lacking: .overflowDiagnostic, missing)
            } else if mode == .lightweight && !GuardInstaller.lightweightGuardsSupported {
                report.skip("overflow-diagnostic/\(mode)", "overflow", lacking: .lightweightGuards,
                            GuardInstaller.lightweightGuards.missing ?? "")
            } else {
                report.check("overflow-diagnostic/\(mode)", "overflow", timeLimit: SelfChild.timeLimit + 10) { try overflowDiagnostic(mode) }
            }
        }
        report.check("foreign-fault-chains", "overflow", timeLimit: 2 * SelfChild.timeLimit + 10, foreignFaultChains)
        report.check("canary", "overflow", canary)
        report.check("high-water-mark", "overflow", highWaterMark)
    }

    /// Why no thread of this process can have an alternate signal stack, which the overflow handler runs
    /// on (the faulting stack has no room left), or nil: sigaltstack(2) refused even to report the current one.
    private static var alternateStackMissing: String? {
        var current = stack_t()
        guard sigaltstack(nil, &current) != 0 else { return nil }
        let code = errno
        return "sigaltstack(2) fails with \(Errno(rawValue: code)) (\(code)), so the overflow handler has no stack to run on: a seccomp "
            + "profile forbids it; allow sigaltstack"
    }

    /// The child overflows a stack labelled with our pid by recursion; it must die by SIGSEGV with the
    /// diagnostic naming that label and a fault inside the guard.
    private static func overflowDiagnostic(_ mode: GuardMode) throws -> (Bool, String) {
        let label = "verify-\(getpid())@worker-1"
        let child = try SelfChild.run(["overflow-child", "--label", label, "--guard-mode", mode.rawValue])
        let guardSize = StackRequest.defaultGuardSize
        guard child.signal == SIGSEGV, let diagnostic = OverflowDiagnostic(in: child.standardError), diagnostic.label == label,
            (1...guardSize).contains(diagnostic.distance)
        else {
            return (false, "expected death by SIGSEGV naming \"\(label)\" with a fault within the \(guardSize) B guard; "
                + "got \(child.ending): \(SelfChild.oneLine(child.standardError))")
        }
        return (true, "child died by SIGSEGV naming \"\(label)\", fault \(diagnostic.distance) B below the usable bottom "
            + "(guard \(guardSize) B)")
    }

    /// A null dereference with our handler installed dies the way it does without it (same signal,
    /// same Swift runtime crash report when the runtime's backtracer is on), and is not called an overflow.
    /// Under a sanitizer, whose handler is the one ours chains to, both must end in its SEGV report.
    private static func foreignFaultChains() throws -> (Bool, String) {
        let environment = ["SWIFT_BACKTRACE": "enable=yes,interactive=no,threads=crashed,registers=none,images=none"]
        let with = try SelfChild.run(["overflow-child", "--fault", "null"], environment: environment)
        let without = try SelfChild.run(["overflow-child", "--fault", "null", "--no-handler"], environment: environment)
        let marker = Sanitizer.loaded.map { "\($0.rawValue): SEGV" } ?? "Program crashed"
        let died = Sanitizer.loaded == nil ? with.signal == SIGSEGV : with.standardError.contains(marker)
        let passed = died && with.ending == without.ending
            && with.standardError.contains(marker) == without.standardError.contains(marker)
            && !with.standardError.contains("stack overflow")
        let handler = Sanitizer.loaded.map { "chained to \($0.rawValue)'s handler" }
            ?? (without.standardError.contains(marker)
                ? "chained to the Swift runtime's crash handler" : "default action (the Swift backtracer is off here)")
        return (passed, "null dereference: \(with.ending) with our handler, \(without.ending) without; \(handler)")
    }

    /// A clean canary passes; one overwritten byte is reported, naming the stack's label.
    private static func canary() throws -> (Bool, String) {
        let stack = try MmapStackAllocator().allocate(StackRequest(usableSize: 64 << 10, guardSize: 0))
        let layout = stack.descriptor.layout
        try GuardRegistry.register(layout, label: "verify-canary")
        defer { GuardRegistry.unregister(layout) }
        Canary.write(layout)
        let clean = Canary.isIntact(layout)
        // Flipped, not zeroed: the pattern depends on the address, and one byte in 256 is already zero.
        let byte = stack.usableBottom + 5
        byte.storeBytes(of: ~byte.load(as: UInt8.self), as: UInt8.self)
        do {
            try Canary.check(layout)
            return (false, "an overwritten canary passed the check")
        } catch where error.reason == .canaryCorrupted(stack: layout, label: "verify-canary") {
            return (clean, clean ? "clean canary passes; overwritten canary reported for \"verify-canary\"" : "clean canary failed")
        } catch {
            return (false, "unexpected error: \(error)")
        }
    }

    /// The same 96 KiB of recursion on two stacks, one measured by residency, one painted: both marks
    /// must lie between 96 KiB and 96 KiB plus thread start-up, within one page of each other.
    private static func highWaterMark() throws -> (Bool, String) {
        let allocator = try MmapStackAllocator()
        let depth = 96
        var marks: [HighWaterMark.Method: Int] = [:]
        for method in HighWaterMark.Method.allCases {
            let stack = try allocator.allocate(StackRequest(usableSize: 256 << 10))
            if method == .painted { HighWaterMark.paint(stack.descriptor.layout) }
            try StackThread.run(on: stack.descriptor.layout, name: "fs-verify-hwm") { _ = StackThread.use(kibibytes: depth) }
            marks[method] = try stack.highWaterMark(by: method)
        }
        let residency = marks[.residency]!, painted = marks[.painted]!
        let plausible = (depth << 10...(depth + 64) << 10).contains(painted)
        let agree = residency >= painted && residency - painted < systemPageSize
        return (plausible && agree, "\(depth) KiB of recursion: residency says \(residency) B, painting says \(painted) B")
    }
}
