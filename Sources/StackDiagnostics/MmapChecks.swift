@_spi(Benchmarks) import GuardPages
import StackAllocators

/// `verify` for `MmapStackAllocator`: each guard mechanism this kernel offers times each prefault strategy,
/// then release, then the map lines and RSS of 1000 live stacks (fewer where `vm.max_map_count` leaves
/// mprotect guards less room, or memory or a memory cgroup less: the row says so) and their return to the
/// baseline.
package enum MmapChecks {
    package static func run(into report: inout VerifyReport) {
        let modes = report.guardModes(skipping: "lightweight-guard", "mmap")
        for mode in modes {
            let name = "mmap/\(mode)"
            let allocator: MmapStackAllocator
            do {
                allocator = try MmapStackAllocator(guardMode: mode)
            } catch {
                report.add("create", name, false, "error: \(error)")
                continue
            }
            StackChecks.runLifecycles(allocator, name: name, into: &report)
            report.check("live-and-released", name) { try liveAndReleased(allocator, mode: mode) }
        }
    }

    /// 1000 populated 64 KiB stacks: while live, the kernel must show their map lines (one per stack
    /// and guard with mprotect, next to none with lightweight guards) and their resident pages; after
    /// release, no stack's memory still mapped (its `ReleaseMark` gone), RSS back at
    /// the baseline, and map lines within a few of it (other allocations meanwhile can split a mapping). The baseline is taken after
    /// one warm-up round, so what the process keeps for good (guard registry chunks) is not a leak.
    package static func liveAndReleased(_ allocator: MmapStackAllocator, mode: GuardMode, limitOverride: Int? = nil)
        throws -> (Bool, String)
    {
        var (count, scaled) = (1000, "")
        if mode == .protNone {
            // This allocator keeps no budget: past the limit, the process's next mmap, malloc's too, fails.
            let budget = try MapCountBudget(reserve: SlabStackAllocator.Configuration().mapCountReserve, limitOverride: limitOverride)
            (count, scaled) = try StackChecks.mprotectStacks(count, fitting: budget)
        }
        // Each stack is populated: 64 KiB resident and its share of a page table; with its guard, 128 KiB of
        // address space.
        let memory = try StackChecks.fittingMemory(count, residentEach: 68 << 10, committedEach: 128 << 10)
        if memory.count < count {
            guard memory.count >= 10 else {
                throw CheckError(description: "memory for fewer than 10 populated stacks: \(memory.limits.joined(separator: "; "))")
            }
            scaled += " (scaled down to \(memory.count): \(memory.limits.joined(separator: "; ")))"
            count = memory.count
        }
        _ = try liveRound(allocator, count: count)
        let (before, live, after, mapped) = try liveRound(allocator, count: count)
        let addedLines = live.mapLines - before.mapLines
        let expectedLines = mode == .protNone ? (2 * count - 10)...(2 * count + 10) : 0...100
        let addedKiB = live.residentKiB - before.residentKiB
        let passed = expectedLines.contains(addedLines) && addedKiB >= count * 60 && mapped == 0
            && after.mapLines <= before.mapLines + 4 && after.residentKiB - before.residentKiB < 4096
        return (passed, "\(count) live populated stacks\(scaled) added \(addedLines) map lines (expected \(expectedLines)) and "
            + "\(addedKiB) KiB RSS (expected >= \(count * 60)); after release: \(mapped) stacks still mapped, "
            + "\(after.mapLines - before.mapLines) lines, "
            + "\(after.residentKiB - before.residentKiB) KiB RSS against the baseline")
    }

    /// Snapshots before, with `count` populated stacks live, and after their release, and how many of
    /// the released stacks are still mapped as stacks.
    private static func liveRound(_ allocator: MmapStackAllocator, count: Int) throws
        -> (before: MemorySnapshot, live: MemorySnapshot, after: MemorySnapshot, stillMapped: Int)
    {
        let before = try MemorySnapshot.now()
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
        defer { storage.deallocate() }
        var made = 0
        defer { storage.deinitialize(count: made) }
        for index in 0..<count {
            (storage + index).initialize(to: try allocator.allocate(StackRequest(usableSize: 64 << 10, prefault: PrefaultPolicy(.populate))))
            made += 1
        }
        let live = try MemorySnapshot.now()
        let layouts = (0..<count).map { storage[$0].descriptor.layout }
        let marks = layouts.map(ReleaseMark.init(writingInto:))
        storage.deinitialize(count: made)
        made = 0
        // A thread's new malloc arena or stack may be mapped into the freed addresses at any time: only a
        // range that still holds the stack's mark is the stack's memory.
        let stillMapped = try zip(marks, layouts).filter { try $0.survives(in: $1) }.count
        return (before, live, try MemorySnapshot.now(), stillMapped)
    }
}
