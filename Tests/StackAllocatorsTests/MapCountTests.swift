import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import StackTestSupport
import Testing

// These run in child processes (exit tests): the map count is process-wide, and other tests mapping
// memory in parallel would blur it. Within the child, the test runtime's own threads may still map (a new
// thread's stack), so the checks count the kernel's mappings where the stacks are.

/// The whole memory of a stack, guard included.
private func wholeRange(_ layout: StackLayout) -> Range<UInt> { layout.base..<layout.top }

/// Allocates `count` stacks; `body` sees the mappings where they are while they live. Returns where they
/// were.
private func withLiveStacks(
    _ allocator: MmapStackAllocator, count: Int, _ body: (Int) throws -> Void
) throws -> [Range<UInt>] {
    let stacks = try HeldStacks(count, from: allocator)
    let ranges = stacks.layouts.map(wholeRange)
    try body(try KernelMaps.mappings(overlapping: ranges))
    stacks.release(count)
    return ranges
}

@Suite("Map count")
struct MapCountTests {
    @Test("10,000 stacks with lightweight guards add fewer than 100 map lines; release leaves none", needsNoSanitizer,
          .enabled(if: GuardInstaller.lightweightGuardsSupported, "needs MADV_GUARD_INSTALL (Linux >= 6.13)"))
    func lightweight() async throws {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let allocator = try MmapStackAllocator(guardMode: .lightweight)
            let ranges = try withLiveStacks(allocator, count: 10_000) { live in
                ensure(live < 100, "10,000 stacks take \(live) map lines")
            }
            let left = try KernelMaps.mappings(overlapping: ranges)
            ensure(left == 0, "\(left) map lines left where the stacks were, after release")
        }
    }

    @Test("10,000 stacks with mprotect guards add about 2 map lines each; release leaves none", needsNoSanitizer)
    func mprotect() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let allocator = try MmapStackAllocator(guardMode: .protNone)
            let ranges = try withLiveStacks(allocator, count: 10_000) { live in
                ensure((19_900...20_100).contains(live), "10,000 mprotect stacks take \(live) map lines")
            }
            let left = try KernelMaps.mappings(overlapping: ranges)
            ensure(left == 0, "\(left) map lines left where the stacks were, after release")
        }
    }

    @Test("mprotect stacks beyond vm.max_map_count give mapCountExhausted, and nothing leaks", needsNoSanitizer)
    func exhaustion() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let allocator = try MmapStackAllocator(guardMode: .protNone)
            let limit = try MapCount.limit()
            // Each stack costs two mappings; room for all of them plus slack so the loop must hit the limit.
            let capacity = (limit - (try MapCount.current())) / 2 + 100
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
                fail("expected mapCountExhausted after \(count) stacks, got \(String(describing: failure))")
            }
            ensure(reportedLimit == limit, "\(failure!)")
            ensure(failure!.description.contains("vm.max_map_count"), failure!.description)
            let ranges = (0..<count).map { wholeRange(storage[$0].descriptor.layout) }
            storage.deinitialize(count: count)
            storage.deallocate()
            let left = try KernelMaps.mappings(overlapping: ranges)
            ensure(left == 0, "\(left) map lines left where the stacks were, after release")
            ensure(allocator.stats.live == 0 && allocator.stats.bytesReserved == 0, "\(allocator.stats)")
        }
    }
}
