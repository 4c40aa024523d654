@_spi(Benchmarks) import GuardPages
import FiberScheduler
import Glibc
@_spi(Benchmarks) import OverflowDetection
import StackAllocators
import StackTestSupport
import Testing

@Suite("Custom allocators keep the guard and the overflow diagnostic")
struct GuardedCustomAllocatorTests {
    @Test("Stack.guarded makes a guard the kernel refuses, registers it, and the release unregisters it", needsNoSanitizer)
    func guardedStack() async {
        // In a child: another test mapping (and registering) memory at the freed addresses would blur
        // the read-back after the release.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let allocator = GuardedMmapAllocator()
            let stack = try allocator.allocate(StackRequest(usableSize: 64 << 10, prefault: PrefaultPolicy(.populate)))
            let layout = stack.descriptor.layout
            ensure(stack.descriptor.guardMechanism == .protNone, "\(stack.descriptor)")
            let probe = try StackProbeReport(layout: layout)
            ensure(probe.guardIsSound && probe.accessibleGuardPages == 0, "\(probe)")
            ensure(probe.residentUsablePages == probe.usablePages, "prefault not honoured: \(probe)")
            ensure(GuardRegistry.entry(forStackAt: layout.usableBottom)?.guardRange == layout.guardRange, "not registered")
            stack.release()
            ensure(GuardRegistry.entry(forStackAt: layout.usableBottom) == nil, "still registered after the release")
            let unmapped = try Probe.isUnmapped(layout.base..<layout.top)
            ensure(unmapped, "still mapped after the release")
        }
    }

    @Test("An overflow on a README-allocator stack under the scheduler names the fiber")
    func readmeAllocatorOverflowIsNamed() async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) {
            try overflowOneFiber(on: GuardedMmapAllocator())
        }
        let stderr = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(stderr.contains(#/stack overflow in fiber "fiber \d+ on worker 0/#), "\(stderr)")
    }

    @Test("The scheduler registers the guard of a stack its allocator did not register")
    func unregisteredStackIsRegisteredByTheScheduler() async throws {
        // In process: while the fiber lives, its stack is in the registry; after shutdown it is gone.
        let allocator = UnregisteredArenaAllocator()
        let direct = try allocator.allocate(StackRequest(usableSize: 64 << 10))
        #expect(GuardRegistry.entry(forStackAt: direct.descriptor.layout.usableBottom) == nil)
        direct.release()
        let scheduler = try FiberScheduler(config: oneWorker(allocator))
        let bottom = try scheduler.submit { currentStackAddress() }.wait()
        let entry = try #require(registeredNear(bottom))
        #expect(entry.label.hasPrefix("fiber "), "\(entry)")
        scheduler.shutdown()
        #expect(GuardRegistry.entry(forStackAt: entry.usableRange.lowerBound) == nil)
        // In a child: the overflow is named, not a bare SIGSEGV.
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) {
            try overflowOneFiber(on: UnregisteredArenaAllocator())
        }
        let stderr = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(stderr.contains(#/stack overflow in fiber "fiber \d+ on worker 0/#), "\(stderr)")
    }

    @Test("A tracking decorator counts live stacks and releases each inner stack once", needsNoSanitizer)
    func trackingDecorator() async {
        // In a child, for the same reason as `guardedStack`.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let inner = GuardedMmapAllocator()
            let tracking = TrackingAllocator(wrapping: inner)
            var bottoms: [UInt] = []
            do {
                let first = try tracking.allocate(StackRequest(usableSize: 32 << 10))
                let second = try tracking.allocate(StackRequest(usableSize: 32 << 10))
                bottoms = [first.descriptor.layout.usableBottom, second.descriptor.layout.usableBottom]
                ensure(tracking.live.load(ordering: .relaxed) == 2)
                ensure(GuardRegistry.entry(forStackAt: bottoms[0]) != nil, "the inner stack is not registered")
                first.release()
                ensure(tracking.live.load(ordering: .relaxed) == 1)
                ensure(GuardRegistry.entry(forStackAt: bottoms[0]) == nil, "still registered after the release")
                _ = consume second
            }
            ensure(tracking.live.load(ordering: .relaxed) == 0 && tracking.peak.load(ordering: .relaxed) == 2)
            for bottom in bottoms {
                ensure(GuardRegistry.entry(forStackAt: bottom) == nil, "still registered")
                let unmapped = try Probe.isUnmapped(bottom..<bottom + UInt(systemPageSize))
                ensure(unmapped, "still mapped after the release")
            }
            // The scheduler runs jobs on the decorated allocator.
            let scheduler = try FiberScheduler(config: oneWorker(tracking))
            let answer = try scheduler.submit { 21 * 2 }.wait()
            ensure(answer == 42, "the job answered \(answer)")
            scheduler.shutdown()
            ensure(tracking.live.load(ordering: .relaxed) == 0, "stacks left live")
        }
    }
}

/// One worker, one fiber, 64 KiB stacks of `allocator`.
func oneWorker(_ allocator: any StackAllocator) -> FiberConfig {
    var config = FiberConfig(allocator: allocator)
    config.usableSize = 64 << 10
    config.workerCount = 1
    config.initialPoolSize = 1
    config.targetPoolSize = 1
    return config
}

/// Runs one job that recurses until its stack overflows; never returns.
private func overflowOneFiber(on allocator: any StackAllocator) throws {
    let scheduler = try FiberScheduler(config: oneWorker(allocator))
    _ = try scheduler.submit { () -> Int in StackThread.overflow() }.wait()
}

/// The registered stack whose usable range holds `address`.
private func registeredNear(_ address: UInt) -> GuardRegistry.Entry? {
    var page = address & ~UInt(systemPageSize - 1)
    for _ in 0..<64 {
        if let entry = GuardRegistry.entry(forStackAt: page), entry.usableRange.contains(address) { return entry }
        page -= UInt(systemPageSize)
    }
    return nil
}
