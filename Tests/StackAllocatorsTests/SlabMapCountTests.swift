import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import StackTestSupport
import Testing

// Exit tests: the map count is process-wide, and other tests mapping memory in parallel would blur it.
// Within the child, the test runtime's own threads may still map (a new thread's stack), so the checks
// count the kernel's mappings in the slab's regions (`KernelMaps.mappings(overlapping:)`), except where
// the slab's own budget reads the process's count.

/// Lines a slab's regions add beyond what its budget charges: under strict overcommit a region is
/// reserved PROT_NONE, and its uncarved rest is a line of its own; elsewhere the rest merges with the
/// highest stack.
private func regionLines(_ regions: [Range<UInt>]) -> Int { Overcommit.isStrict ? regions.count : 0 }

/// Checks a slab's refusal at its map-count reserve, after `count` stacks, against the kernel; `baseline`
/// is the process's count when the slab was made. The test runtime's threads may map memory meanwhile (a
/// new thread's stack), which the budget sees only when it reads the count again, so the slab's own
/// mappings are counted apart: the kernel's lines in its regions. Returns the stacks the error says
/// would fit below the limit.
@discardableResult
private func checkRefusal(
    _ failure: StackError?, of slab: SlabStackAllocator, after count: Int, baseline: Int, limit: Int, reserve: Int
) throws -> Int {
    guard case .mapCountReserveReached(let reportedLimit, let current, let reportedReserve, let remaining)? = failure?.reason else {
        fail("expected mapCountReserveReached after \(count) stacks, got \(String(describing: failure))")
    }
    let regions = slab.regionRanges
    let own = try KernelMaps.mappings(overlapping: regions)
    let now = try MapCount.current()
    ensure(reportedLimit == limit && reportedReserve == reserve, "\(failure!)")
    ensure(current <= now, "the error's count, \(current), is above the process's, \(now)")
    ensure(
        baseline + own <= limit - reserve + regionLines(regions),
        "the slab went into the reserve: \(own) mappings of its own over \(baseline) before it, of \(limit)")
    ensure(
        current + MapCountBudget.linesPerGuard > limit - reserve,
        "refused at \(current) of \(limit) mappings, with room for another guard above the reserve of \(reserve)")
    ensure(remaining == (limit - current) / 2, "\(remaining) stacks remaining at \(current) of \(limit) mappings")
    let description = failure!.description
    ensure(description.contains("vm.max_map_count") && description.contains("would hold \(remaining) more"), description)
    return remaining
}

@Suite("Slab map count", needsNoSanitizer)
struct SlabMapCountTests {
    /// One million live stacks of 64 KiB over 64 KiB guards: 128 GiB of address space (MAP_NORESERVE), none
    /// of it touched but 1,000 pages. What it costs in memory: page tables for the guard markers (about
    /// 250 MiB: a page-table page per 16 stacks), the test's `Stack` storage (about 100 MiB) and the slab's
    /// bookkeeping (8 MiB of slot serials, 4 MiB of free lists after release). The test machine (24 GiB) holds it with room.
    @Test(
        "A million live guarded 64 KiB stacks add fewer than 1,000 map lines; 1,000 sampled guards are inaccessible",
        .enabled(if: GuardInstaller.lightweightGuardsSupported, "needs MADV_GUARD_INSTALL (Linux >= 6.13)"),
        .disabled(if: Overcommit.isStrict, "vm.overcommit_memory=2 charges every carved slot: a million need 128 GiB of CommitLimit (/proc/meminfo)"))
    func millionStacks() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let count = 1_000_000
            let slab = try SlabStackAllocator(.init(usableSize: 64 << 10, guardSize: 64 << 10, guardMode: .lightweight))
            let request = StackRequest(usableSize: 64 << 10, guardSize: 64 << 10)
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
            defer { storage.deallocate() }
            for index in 0..<count {
                (storage + index).initialize(to: try slab.allocate(request))
            }
            let regions = slab.regionRanges
            let live = try KernelMaps.mappings(overlapping: regions)
            ensure(live < 1000, "a million stacks take \(live) map lines")
            ensure(slab.stats.live == count, "\(slab.stats)")
            ensure(slab.stats.liveByGuard[.lightweight] == count, "\(slab.stats)")

            var generator = SystemRandomNumberGenerator()
            var sample = Set<Int>()
            while sample.count < 1000 { sample.insert(Int.random(in: 0..<count, using: &generator)) }
            for index in sample {
                let stack = storage + index
                ensure(stack.pointee.guardMechanism == .lightweight, "stack \(index): \(stack.pointee.guardMechanism)")
                let guardRange = stack.pointee.guardRange
                for address in [guardRange.lowerBound, guardRange.upperBound - 1, guardRange.lowerBound + UInt(guardRange.count / 2)] {
                    let accessible = try Probe.isAccessible(address)
                    ensure(!accessible, "guard byte 0x\(String(address, radix: 16)) of stack \(index) is accessible")
                }
                // Touch one page of each sampled stack: resident memory must be exactly these pages.
                (stack.pointee.top - 1).storeBytes(of: 1, as: UInt8.self)
            }
            let resident = try slab.residentBytes()
            ensure(resident == 1000 * systemPageSize, "\(resident) bytes resident, expected the 1,000 touched pages")

            storage.deinitialize(count: count)
            let released = try KernelMaps.mappings(overlapping: regions)
            ensure(released <= 1, "after release: \(released) map lines in the slab's regions, one retained region expected")
            slab.trim()
            let trimmed = try KernelMaps.mappings(overlapping: regions)
            ensure(trimmed == 0, "after trim: \(trimmed) map lines in the slab's regions")
            ensure(slab.stats.live == 0 && slab.stats.bytesReserved == 0, "\(slab.stats)")
        }
    }

    @Test("With mprotect guards the slab stops with mapCountReserveReached before vm.max_map_count, and nothing leaks")
    func mprotectReserve() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let reserve = 1024
            let request = StackRequest(usableSize: 16 << 10, guardSize: 4096)
            let limit = try MapCount.limit()
            // Room for every stack the limit allows, plus slack, so the loop must stop on the reserve. Made
            // before the slab, whose budget then reads the count with it.
            let capacity = (limit - (try MapCount.current())) / 2 + 100
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: capacity)
            defer { storage.deallocate() }
            let slab = try SlabStackAllocator(
                .init(usableSize: 16 << 10, guardSize: 4096, guardMode: .protNone, mapCountReserve: reserve))
            let baseline = try MapCount.current()
            var count = 0
            var failure: StackError?
            while count < capacity {
                do throws(StackError) {
                    (storage + count).initialize(to: try slab.allocate(request))
                    count += 1
                } catch {
                    failure = error
                    break
                }
            }
            try checkRefusal(failure, of: slab, after: count, baseline: baseline, limit: limit, reserve: reserve)
            let regions = slab.regionRanges
            ensure(count > 20_000, "only \(count) stacks before the reserve")

            // A released slot is reused without new mappings, even at the reserve.
            (storage + count - 1).deinitialize(count: 1)
            (storage + count - 1).initialize(to: try slab.allocate(request))

            storage.deinitialize(count: count)
            slab.trim()
            let left = try KernelMaps.mappings(overlapping: regions)
            ensure(left == 0, "\(left) mappings left in the slab's regions after release and trim")
            ensure(slab.stats.live == 0 && slab.stats.bytesReserved == 0, "\(slab.stats)")
        }
    }

    @Test("Under a low vm.max_map_count (1,000, injected) the reserve is clamped to a quarter, and the stacks the error says would fit below the limit are what a slab with no reserve then carves")
    func lowLimit() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let limit = 1000
            let request = StackRequest(usableSize: 16 << 10, guardSize: 4096)
            var configuration = SlabStackAllocator.Configuration(usableSize: 16 << 10, guardSize: 4096, guardMode: .protNone)
            configuration.mapCountLimitOverride = limit
            // Made before the slab, whose budget then reads the count with it.
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: limit)
            defer { storage.deallocate() }
            let reserved = try SlabStackAllocator(configuration)  // the default reserve, 1,024: above the limit
            var count = 0
            let baseline = try MapCount.current()
            ensure(baseline < limit / 2, "the test process already has \(baseline) mappings")

            func fill(_ slab: SlabStackAllocator) -> (made: Int, error: StackError?) {
                let start = count
                while count < limit {
                    do throws(StackError) {
                        (storage + count).initialize(to: try slab.allocate(request))
                        count += 1
                    } catch {
                        return (count - start, error)
                    }
                }
                return (count - start, nil)
            }
            let (made, failure) = fill(reserved)
            let remaining = try checkRefusal(
                failure, of: reserved, after: made, baseline: baseline, limit: limit, reserve: limit / 4)
            // The mappings the error says are left hold what it says: a slab without a reserve fills the
            // room its budget reads when it is made (the error's, unless a runtime thread mapped since), less
            // the line its own region may add.
            configuration.mapCountReserve = 0
            let start = try MapCount.current()
            let unreserved = try SlabStackAllocator(configuration)
            let (more, last) = fill(unreserved)
            let room = (limit - start) / 2
            ensure(
                more == room || (more == room - 1 && (limit - start) % 2 == 0),
                "the error said \(remaining) more would fit; \(limit - start) mappings were left when a slab with no reserve was made, room for \(room); it made \(more)")
            guard case .mapCountReserveReached(_, _, 0, 0)? = last?.reason else {
                fail("expected no room left, got \(String(describing: last))")
            }
            storage.deinitialize(count: count)
        }
    }
}
