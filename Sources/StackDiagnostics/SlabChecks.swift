import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators

/// `verify` for `SlabStackAllocator`: each guard mechanism this kernel offers times each prefault strategy,
/// a released slot coming back zeroed with its guard, and the map lines 10,000 stacks cost.
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
            report.check("map-lines", name) {
                try Sanitizer.requireProcessAccounting()
                let small = try SlabStackAllocator(.init(usableSize: 64 << 10, guardMode: mode))
                let count = 10_000
                let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
                defer { storage.deallocate() }
                let baseline = try MapCount.current()
                for index in 0..<count {
                    (storage + index).initialize(to: try small.allocate(StackRequest(usableSize: 64 << 10)))
                }
                let added = try MapCount.current() - baseline
                storage.deinitialize(count: count)
                small.trim()
                let after = try MapCount.current()
                let expected = mode == .lightweight ? 0..<10 : (2 * count - 10)..<(2 * count + 10)
                return (expected.contains(added) && after <= baseline,
                        "\(count) live stacks added \(added) map lines (expected \(expected)); \(after - baseline) after release and trim")
            }
        }
    }
}
