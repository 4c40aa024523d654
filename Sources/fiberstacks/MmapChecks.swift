import StackAllocators

/// `verify` for `MmapStackAllocator`: each guard mechanism this kernel offers times each prefault strategy,
/// then release, then the map count back at its baseline.
enum MmapChecks {
    static func run(into report: inout VerifyReport) {
        var modes: [GuardMode] = [.mprotect]
        if GuardInstaller.lightweightGuardsSupported {
            modes.insert(.lightweight, at: 0)
        } else {
            report.add("lightweight-guard", "mmap", true, "skipped: MADV_GUARD_INSTALL needs Linux >= 6.13 (running \(kernelRelease))")
        }
        for mode in modes {
            let name = "mmap/\(mode)"
            let allocator: MmapStackAllocator
            do {
                allocator = try MmapStackAllocator(guardMode: mode)
            } catch {
                report.add("create", name, false, "error: \(error)")
                continue
            }
            for strategy in PrefaultStrategy.allCases {
                StackChecks.runLifecycle(
                    allocator, name: name, request: StackRequest(usableSize: 256 << 10, prefault: PrefaultPolicy(strategy)),
                    into: &report)
            }
            report.check("map-count-baseline", name) {
                let baseline = try MapCount.current()
                var stacks: [UnsafeMutablePointer<Stack>] = []
                defer { for stack in stacks { stack.deinitialize(count: 1); stack.deallocate() } }
                for _ in 0..<1000 {
                    let slot = UnsafeMutablePointer<Stack>.allocate(capacity: 1)
                    slot.initialize(to: try allocator.allocate(StackRequest(usableSize: 64 << 10)))
                    stacks.append(slot)
                }
                let live = try MapCount.current()
                for stack in stacks { stack.deinitialize(count: 1); stack.deallocate() }
                stacks.removeAll()
                let after = try MapCount.current()
                return (after <= baseline, "maps: \(baseline) before, \(live) with 1000 live stacks, \(after) after release")
            }
        }
    }
}
