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
                            + "after release, guard sound: \(probe.guardIsSound), reads zero: \(zero)\(StackChecks.discardCause)")
            }
            report.check("map-lines", name) { try mapLines(mode: mode) }
        }
    }

    /// Stacks the map-lines check asks for, where the map count allows them.
    package static let mapLineStacks = 10_000

    /// The map lines `mapLineStacks` live slab stacks with `mode` guards add (none with lightweight guards,
    /// two each with mprotect), and that none is left after release and trim: no more than malloc may add
    /// meanwhile, and no region's address space. The count is scaled down to what the memory limits
    /// (`StackChecks.fittingMemory`: `ulimit -v` among them) and, with mprotect guards, `vm.max_map_count`
    /// (or `limitOverride`) leave: the property holds at any count, and a low limit is the slab's to
    /// respect, not a failure.
    package static func mapLines(mode: GuardMode, limitOverride: Int? = nil) throws -> (Bool, String) {
        try Sanitizer.requireProcessAccounting()
        var configuration = SlabStackAllocator.Configuration(usableSize: 64 << 10, guardMode: mode)
        configuration.mapCountLimitOverride = limitOverride
        let small = try SlabStackAllocator(configuration)
        var (count, scaled) = (mapLineStacks, "")
        // 64 KiB stacks left untouched: their page tables and guard markers, and their address space.
        let memory = try StackChecks.fittingMemory(count, residentEach: 512, committedEach: small.sizes.total)
        if memory.count < count {
            guard memory.count >= 100 else {
                throw CheckError(description: "this process holds fewer than 100 slab stacks: \(memory.limits.joined(separator: "; "))")
            }
            (count, scaled) = (memory.count, " (scaled down from \(count): \(memory.limits.joined(separator: "; ")))")
        }
        if small.guardMechanism == .protNone {
            let budget = try MapCountBudget(reserve: small.configuration.mapCountReserve, limitOverride: limitOverride)
            // Each region of the slab is one more mapping.
            let regions = (count + small.configuration.stacksPerRegion - 1) / small.configuration.stacksPerRegion
            let fitted = try StackChecks.mprotectStacks(count, fitting: budget, lessLines: regions)
            if fitted.count < count { (count, scaled) = fitted }
        }
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
        defer { storage.deallocate() }
        let (baseline, reservedBefore) = (try MapCount.current(), try SystemFile.processStatusBytes("VmSize"))
        var made = 0
        defer { storage.deinitialize(count: made) }
        while made < count {
            (storage + made).initialize(to: try small.allocate(StackRequest(usableSize: 64 << 10)))
            made += 1
        }
        let added = try MapCount.current() - baseline
        // A region is a mapping of its own unless it merges with its neighbour: normally one or two for
        // these stacks, more where the address space is limited (`ulimit -v`) and the slab maps smaller ones.
        let regions = small.regionRanges.count
        storage.deinitialize(count: made)
        made = 0
        small.trim()
        let (after, reservedAfter) = (try MapCount.current(), try SystemFile.processStatusBytes("VmSize"))
        let expected = mode == .lightweight ? 0..<(regions + 10) : (2 * count - 10)..<(2 * count + regions + 10)
        // malloc may add a line or two of its own meanwhile (a heap segment, a thread's arena), so what
        // proves every region unmapped is the address space: a region kept would keep all of its size.
        let kept = reservedAfter - reservedBefore
        return (expected.contains(added) && after <= baseline + 4 && kept < small.regionSize / 2,
                "\(count) live stacks\(scaled) added \(added) map lines (expected \(expected)); after release and trim "
                    + "\(after - baseline) lines and \(kept >> 20) MiB of address space more than before (a region is "
                    + "\(small.regionSize >> 20) MiB)\(StackChecks.discardCause)")
    }
}
