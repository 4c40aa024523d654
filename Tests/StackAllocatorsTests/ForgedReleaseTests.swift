@_spi(Benchmarks) import OverflowDetection
import Glibc
import Logging
import StackAllocators
import Testing
import StackTestSupport

/// A second owner of `stack`'s memory, built the way only an allocator should build one.
private func forge(_ stack: borrowing Stack) -> Stack {
    Stack(descriptor: stack.descriptor, allocator: stack.allocator)
}

/// A stack this allocator never handed out: `stack`'s addresses and sizes with a made-up tag.
private func madeUp(_ stack: borrowing Stack, tag: UInt) -> Stack {
    let descriptor = stack.descriptor
    return Stack(
        descriptor: StackDescriptor(
            layout: descriptor.layout, guardMechanism: descriptor.guardMechanism, node: descriptor.node, tag: tag),
        allocator: stack.allocator)
}

/// Scratch memory of this test, and a stack descriptor lying in it that no allocator made.
private final class Scratch {
    let range: Range<UInt>
    let layout: StackLayout

    init() throws {
        let sizes = try StackSizes(usableSize: 64 << 10, guardSize: 64 << 10)
        let address = try #require(mmap(nil, sizes.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        try #require(address != MAP_FAILED)
        let base = UInt(bitPattern: address)
        range = base..<(base + UInt(sizes.total))
        layout = try StackLayout(base: base, sizes: sizes)
    }

    deinit { precondition(munmap(UnsafeMutableRawPointer(bitPattern: range.lowerBound), range.count) == 0) }
}

/// How many refusals `log` holds at error level naming `allocator`.
private func refusals(in log: CapturingLogHandler.Store, allocator: String) -> Int {
    log.all.filter { $0.level == .error && $0.message.contains("release refused") && $0.message.contains("\"allocator\": \(allocator)") }
        .count
}

/// Releases a forged copy of a live stack, then the stack itself, and checks with the kernel that its
/// mapping went once: the stack allocated in between (usually in the freed hole) stays mapped and
/// registered, and exactly one release was refused. Run it in a child process (it stops the process on a
/// failure): in a process where other tests map memory, one of them could take the freed hole first.
private func expectUnmappedOnce(_ allocator: some StackAllocator & StackStatsReporting, _ request: StackRequest) throws {
    let genuine = try allocator.allocate(request)
    let whole = genuine.descriptor.layout.base..<genuine.descriptor.layout.top
    _ = forge(genuine)
    let left = try KernelMaps.mappedBytes(in: whole)
    precondition(left == 0, "\(left) bytes still mapped after the forged copy's release")
    let next = try allocator.allocate(request)
    let nextWhole = next.descriptor.layout.base..<next.descriptor.layout.top
    genuine.release()
    let nextMapped = try KernelMaps.mappedBytes(in: nextWhole)
    precondition(nextMapped == nextWhole.count, "the refused release unmapped a live stack")
    precondition(GuardRegistry.entry(forStackAt: next.descriptor.layout.usableBottom) != nil, "the live stack lost its registration")
    let other = try allocator.allocate(request)
    precondition(other.descriptor.layout.usableBottom != next.descriptor.layout.usableBottom, "one stack handed out twice")
    let stats = allocator.stats
    precondition(stats.refusedReleases == 1 && stats.releases == 1 && stats.live == 2, "\(stats)")
}

/// Releases a forged copy of a live stack, then the stack itself, while another stack keeps its region in
/// use: the slot must be freed once, so the next two stacks differ, and exactly one release was refused.
private func expectNoSharedSlot(_ allocator: some StackAllocator & StackStatsReporting, _ request: StackRequest) throws {
    let keeper = try allocator.allocate(request)
    let genuine = try allocator.allocate(request)
    _ = forge(genuine)
    genuine.release()
    let first = try allocator.allocate(request)
    let second = try allocator.allocate(request)
    #expect(first.usableBottom != second.usableBottom, "one slot handed to two owners")
    #expect(first.usableBottom != keeper.usableBottom && second.usableBottom != keeper.usableBottom)
    #expect(allocator.stats.refusedReleases == 1)
    #expect(allocator.stats.releases == 1 && allocator.stats.live == 3)
}

@Suite("Forged and repeated releases")
struct ForgedReleaseTests {
    @Test("mmap: a forged copy released first frees the stack once; the genuine release is refused", needsNoSanitizer)
    func mmapForgedThenGenuine() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            for mode in MmapStackAllocatorTests.guardModes {
                let (logger, log) = CapturingLogHandler.logger()
                let allocator = try MmapStackAllocator(guardMode: mode, logger: logger)
                try expectUnmappedOnce(allocator, StackRequest(usableSize: 64 << 10))
                ensure(refusals(in: log, allocator: "mmap") == 1, "\(mode): \(log.all)")
            }
        }
    }

    @Test("mmap: descriptors it never handed out are refused and nothing is unmapped",
          arguments: MmapStackAllocatorTests.guardModes)
    func mmapMadeUp(mode: GuardMode) throws {
        let allocator = try MmapStackAllocator(guardMode: mode)
        let scratch = try Scratch()
        _ = Stack(descriptor: StackDescriptor(layout: scratch.layout, guardMechanism: allocator.guardMechanism), allocator: allocator)
        #expect(try KernelMaps.mappedBytes(in: scratch.range) == scratch.range.count)
        let live = try allocator.allocate(StackRequest(usableSize: 64 << 10))
        let whole = live.descriptor.layout.base..<live.descriptor.layout.top
        _ = madeUp(live, tag: live.descriptor.tag &+ 1)
        #expect(try KernelMaps.mappedBytes(in: whole) == whole.count)
        #expect(GuardRegistry.entry(forStackAt: live.descriptor.layout.usableBottom) != nil)
        #expect(allocator.stats.refusedReleases == 2 && allocator.stats.releases == 0)
    }

    @Test("slab: a forged copy and the genuine stack free the slot once; the next two stacks differ")
    func slabForgedThenGenuine() throws {
        let (logger, log) = CapturingLogHandler.logger()
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10, stacksPerRegion: 8), logger: logger)
        try expectNoSharedSlot(slab, StackRequest(usableSize: 64 << 10))
        #expect(refusals(in: log, allocator: "slab") == 1)
    }

    @Test("slab: descriptors it never handed out are refused and free no slot")
    func slabMadeUp() throws {
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10, stacksPerRegion: 8))
        let request = StackRequest(usableSize: 64 << 10)
        let scratch = try Scratch()
        _ = Stack(descriptor: StackDescriptor(layout: scratch.layout, guardMechanism: slab.guardMechanism), allocator: slab)
        let live = try slab.allocate(request)
        _ = madeUp(live, tag: 0)
        _ = madeUp(live, tag: live.descriptor.tag &+ 1)
        let next = try slab.allocate(request)
        #expect(next.usableBottom != live.usableBottom)
        #expect(slab.stats.refusedReleases == 3 && slab.stats.releases == 0)
        #expect(try KernelMaps.mappedBytes(in: scratch.range) == scratch.range.count)
    }

    @Test("pool: a forged copy and the genuine stack enter a cache once; the inner allocator gets each stack back once")
    func poolForgedThenGenuine() throws {
        let (logger, log) = CapturingLogHandler.logger()
        let inner = try MmapStackAllocator()
        do {
            let pool = try PooledStackAllocator(
                wrapping: inner, .init(stack: StackRequest(usableSize: 64 << 10), minimumIdle: 0), logger: logger)
            try expectNoSharedSlot(pool, StackRequest(usableSize: 64 << 10))
            #expect(refusals(in: log, allocator: "pool") == 1)
        }
        // The pool is gone: every inner stack went back once, and the kernel has none of them.
        #expect(inner.stats.live == 0 && inner.stats.refusedReleases == 0)
    }

    @Test("pool: descriptors it never handed out put nothing into a cache")
    func poolMadeUp() throws {
        let pool = try PooledStackAllocator(
            wrapping: try MmapStackAllocator(), .init(stack: StackRequest(usableSize: 64 << 10), minimumIdle: 0))
        let request = StackRequest(usableSize: 64 << 10)
        let live = try pool.allocate(request)
        _ = madeUp(live, tag: live.descriptor.tag & 0xFFFF_FFFF)  // the slot, without its generation
        _ = madeUp(live, tag: UInt(UInt32.max))  // a slot that never existed
        let scratch = try Scratch()
        _ = Stack(descriptor: StackDescriptor(layout: scratch.layout, guardMechanism: live.guardMechanism, tag: live.descriptor.tag), allocator: pool)
        let first = try pool.allocate(request)
        let second = try pool.allocate(request)
        #expect(first.usableBottom != live.usableBottom && second.usableBottom != live.usableBottom)
        #expect(first.usableBottom != second.usableBottom)
        #expect(pool.stats.refusedReleases == 3)
        // The descriptor with the right tag and foreign addresses left the genuine stack handed out.
        #expect(try KernelMaps.mappedBytes(in: scratch.range) == scratch.range.count)
        live.release()
        #expect(pool.stats.refusedReleases == 3)
    }

    @Test("huge pages, one stack per region: a forged copy released first unmaps once; the genuine release is refused",
          .enabled(if: HugePages.haveFree(), HugePages.needFree), needsNoSanitizer)
    func hugeRegionForgedThenGenuine() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let (logger, log) = CapturingLogHandler.logger()
            let allocator = HugePageStackAllocator(logger: logger)
            try expectUnmappedOnce(allocator, HugePages.request(.anonymous))
            ensure(refusals(in: log, allocator: "huge-page") == 1, "\(log.all)")
            let scratch = try Scratch()
            _ = Stack(descriptor: StackDescriptor(layout: scratch.layout, guardMechanism: .protNone), allocator: allocator)
            let mapped = try KernelMaps.mappedBytes(in: scratch.range)
            ensure(mapped == scratch.range.count, "a made-up release unmapped memory the allocator never made")
            ensure(allocator.stats.refusedReleases == 2, "\(allocator.stats)")
        }
    }

    @Test("huge pages, packed: a forged copy and the genuine stack free the slot once; the next two stacks differ",
          .enabled(if: HugePages.haveFree(), HugePages.needFree))
    func hugePackedForgedThenGenuine() throws {
        let allocator = HugePageStackAllocator()
        let request = HugePages.request(.anonymous, usable: 64 << 10, packing: .packed)
        try expectNoSharedSlot(allocator, request)
        let keeper = try allocator.allocate(request)
        _ = madeUp(keeper, tag: 0)
        #expect(allocator.stats.refusedReleases == 2)
        let region = keeper.descriptor.layout.usableBottom & ~UInt(HugePages.size - 1)
        #expect(try KernelMaps.mappedBytes(in: region..<(region + UInt(HugePages.size))) == HugePages.size)
    }
}
