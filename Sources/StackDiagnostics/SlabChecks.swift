import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators

/// `verify` for `SlabStackAllocator`: each guard mechanism this kernel offers times each prefault strategy,
/// a released slot coming back zeroed with its guard, and the map lines 10,000 stacks cost (fewer where
/// `vm.max_map_count` leaves mprotect guards less room: the row says so).
package enum SlabChecks {
    package static func run(into report: inout VerifyReport) {
        let modes = report.guardModes(skipping: "lightweight-guard", "slab")
        for mode in modes {
            let name = "slab/\(mode)"
            let slab: SlabStackAllocator
            do {
                slab = try SlabStackAllocator(.init(usableSize: 256 << 10, guardMode: mode))
            } catch {
                report.add("create", name, false, "error: \(error)")
                continue
            }
            // A released slot stays mapped (its guard with it): the slab discards its pages instead.
            StackChecks.runLifecycles(slab, name: name, unmapsOnRelease: false, into: &report)
            report.check("release-discards", name) {
                let first = try slab.allocate(StackRequest(usableSize: 256 << 10))
                memset(first.usableBottom, 0xAB, first.usableSize)
                let base = first.descriptor.layout.base
                first.release()
                let again = try slab.allocate(StackRequest(usableSize: 256 << 10))
                let probe = try StackProbeReport(layout: again.descriptor.layout)
                let zero = UnsafeRawBufferPointer(start: again.usableBottom, count: again.usableSize).allSatisfy { $0 == 0 }
                return (again.descriptor.layout.base == base && probe.residentUsablePages == 0 && probe.guardIsSound && zero,
                        "slot reused: \(again.descriptor.layout.base == base), \(probe.residentUsablePages) pages resident "
                            + "after release, guard sound: \(probe.guardIsSound), reads zero: \(zero)")
            }
            report.check("map-lines", name) { try mapLines(mode: mode) }
        }
    }

    /// Stacks the map-lines check asks for, where the map count allows them.
    package static let mapLineStacks = 10_000

    /// The map lines `mapLineStacks` live slab stacks with `mode` guards add (none with lightweight guards,
    /// two each with mprotect), and that none is left after release and trim. With mprotect guards the
    /// count is scaled down to what `vm.max_map_count` (or `limitOverride`) leaves the slab: the property
    /// holds at any count, and a low limit is the slab's to respect, not a failure.
    package static func mapLines(mode: GuardMode, limitOverride: Int? = nil) throws -> (Bool, String) {
        try Sanitizer.requireProcessAccounting()
        var configuration = SlabStackAllocator.Configuration(usableSize: 64 << 10, guardMode: mode)
        configuration.mapCountLimitOverride = limitOverride
        let small = try SlabStackAllocator(configuration)
        var (count, scaled) = (mapLineStacks, "")
        if small.guardMechanism == .protNone {
            let budget = try MapCountBudget(reserve: small.configuration.mapCountReserve, limitOverride: limitOverride)
            // Each region of the slab is one more mapping.
            let regions = (count + small.configuration.stacksPerRegion - 1) / small.configuration.stacksPerRegion
            (count, scaled) = try StackChecks.mprotectStacks(count, fitting: budget, lessLines: regions)
        }
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
        defer { storage.deallocate() }
        let baseline = try MapCount.current()
        var made = 0
        defer { storage.deinitialize(count: made) }
        while made < count {
            (storage + made).initialize(to: try small.allocate(StackRequest(usableSize: 64 << 10)))
            made += 1
        }
        let added = try MapCount.current() - baseline
        storage.deinitialize(count: made)
        made = 0
        small.trim()
        let after = try MapCount.current()
        let expected = mode == .lightweight ? 0..<10 : (2 * count - 10)..<(2 * count + 10)
        return (expected.contains(added) && after <= baseline,
                "\(count) live stacks\(scaled) added \(added) map lines (expected \(expected)); \(after - baseline) after release and trim")
    }
}
