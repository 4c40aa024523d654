import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import StackTestSupport
import Testing

// These run in child processes (exit tests): the map count is process-wide, and other tests mapping
// memory in parallel would blur it. A failing precondition makes the child exit non-zero; the message
// is on its standard error.

/// Allocates `count` stacks into raw storage; `body` sees the map count with them live.
private func withLiveStacks(
    _ allocator: MmapStackAllocator, count: Int, _ body: (Int) throws -> Void
) throws {
    let stacks = try HeldStacks(count, from: allocator)
    try body(try MapCount.current())
    stacks.release(count)
}

@Suite("Map count")
struct MapCountTests {
    @Test("10,000 stacks with lightweight guards add fewer than 100 map lines; release restores the baseline", needsNoSanitizer,
          .enabled(if: GuardInstaller.lightweightGuardsSupported, "needs MADV_GUARD_INSTALL (Linux >= 6.13)"))
    func lightweight() async throws {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let allocator = try MmapStackAllocator(guardMode: .lightweight)
            let baseline = try MapCount.current()
            try withLiveStacks(allocator, count: 10_000) { live in
                precondition(live - baseline < 100, "10,000 stacks added \(live - baseline) map lines")
            }
            let after = try MapCount.current()
            precondition(after <= baseline, "map count \(after) after release, baseline \(baseline)")
        }
    }

    @Test("10,000 stacks with mprotect guards add about 2 map lines each; release restores the baseline", needsNoSanitizer)
    func mprotect() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let allocator = try MmapStackAllocator(guardMode: .protNone)
            let baseline = try MapCount.current()
            try withLiveStacks(allocator, count: 10_000) { live in
                let added = live - baseline
                precondition((19_900...20_100).contains(added), "10,000 mprotect stacks added \(added) map lines")
            }
            let after = try MapCount.current()
            precondition(after <= baseline, "map count \(after) after release, baseline \(baseline)")
        }
    }

    @Test("mprotect stacks beyond vm.max_map_count give mapCountExhausted, and nothing leaks", needsNoSanitizer)
    func exhaustion() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let allocator = try MmapStackAllocator(guardMode: .protNone)
            let limit = try MapCount.limit()
            let baseline = try MapCount.current()
            // Each stack costs two mappings; room for all of them plus slack so the loop must hit the limit.
            let capacity = (limit - baseline) / 2 + 100
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: capacity)
            var count = 0
            var failure: StackError?
            while count < capacity {
                do throws(StackError) {
                    (storage + count).initialize(to: try allocator.allocate(StackRequest(usableSize: 16 << 10, guardSize: 4096)))
                    count += 1
                } catch {
                    failure = error
                    break
                }
            }
            guard case .mapCountExhausted(let reportedLimit, _)? = failure?.reason else {
                preconditionFailure("expected mapCountExhausted after \(count) stacks, got \(String(describing: failure))")
            }
            precondition(reportedLimit == limit)
            precondition(failure!.description.contains("vm.max_map_count"))
            storage.deinitialize(count: count)
            storage.deallocate()
            let after = try MapCount.current()
            precondition(after <= baseline, "map count \(after) after release, baseline \(baseline)")
            precondition(allocator.stats.live == 0 && allocator.stats.bytesReserved == 0)
        }
    }
}
