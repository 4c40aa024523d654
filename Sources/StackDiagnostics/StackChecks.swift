@_spi(Benchmarks) import GuardPages
import StackAllocators

/// Checks every allocator-independent property of one live stack: its guard and its residency.
package enum StackChecks {
    /// Allocates one stack for `request`, checks it, releases it, and (when `unmapsOnRelease`) checks
    /// that the guard and the usable range are gone.
    package static func runLifecycle(
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
    package static func run(_ stack: borrowing Stack, allocator: String, prefault: PrefaultStrategy, into report: inout VerifyReport) {
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
