@_spi(Benchmarks) import GuardPages
import StackAllocators

/// Checks every allocator-independent property of one live stack: its guard and its residency.
package enum StackChecks {
    /// For each prefault strategy: allocates one 256 KiB stack with it, checks it, releases it, and (when
    /// `unmapsOnRelease`) checks that the guard and the usable range are gone.
    package static func runLifecycles(
        _ allocator: any StackAllocator, name: String, unmapsOnRelease: Bool = true, into report: inout VerifyReport
    ) {
        for strategy in PrefaultStrategy.allCases {
            runLifecycle(
                allocator, name: name, request: StackRequest(usableSize: 256 << 10, prefault: PrefaultPolicy(strategy)),
                unmapsOnRelease: unmapsOnRelease, into: &report)
        }
    }

    /// One stack for `request`: allocated, checked, released, and checked gone when `unmapsOnRelease`.
    private static func runLifecycle(
        _ allocator: any StackAllocator, name: String, request: StackRequest, unmapsOnRelease: Bool,
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
        let layout = stack.descriptor.layout
        stack.release()
        if unmapsOnRelease {
            report.check("release-unmaps/\(strategy)", name) {
                let mapped = try isMappedAsStack(layout)
                return (!mapped, "guard and usable range \(mapped ? "still" : "no longer") mapped as a stack after release")
            }
        }
    }

    /// Whether `layout` is still mapped as the stack it was: some page mapped (mincore), the guard
    /// unreadable and the top page readable. Memory another thread mapped there since the release (a
    /// malloc arena is PROT_NONE until used, a thread stack readable throughout) has another shape.
    package static func isMappedAsStack(_ layout: StackLayout) throws(StackError) -> Bool {
        guard try !Probe.isUnmapped(layout.base..<layout.top) else { return false }
        guard try Probe.accessiblePages(in: layout.guardRange) == 0 else { return false }
        return try Probe.isAccessible(layout.top - 1)
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
