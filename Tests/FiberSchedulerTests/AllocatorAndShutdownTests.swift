import StackTestSupport
import FiberScheduler
import Synchronization
import Testing

@Suite("Pluggable allocators and shutdown")
struct AllocatorAndShutdownTests {
    @Test("A custom allocator: every allocate is matched by a release after shutdown, and fibers ran on its stacks")
    func customAllocator() throws {
        let allocator = CountingHeapAllocator()
        let scheduler = try FiberScheduler(config: testConfig(initial: 2, target: 4, allocator: allocator))
        let gate = JobCounter(1)
        // Each job reports an address in its stack and the stack the scheduler says it is on.
        let handles = (0..<200).map { index in
            scheduler.submit { () throws -> (UInt, StackDescriptor) in
                if index % 2 == 0 { try gate.wait() }  // half of them suspend, so many fibers are in use at once
                return (currentStackAddress(), FiberScheduler.currentFiber!.stack)
            }
        }
        // Open the gate once all 100 waiting jobs are suspended: 100 fibers in use at once.
        let allSuspended = eventually { scheduler.stats.workers.map(\.suspensions).reduce(0, +) == 100 }
        gate.decrement()
        #expect(allSuspended)
        let results = try handles.map { try $0.wait() }
        scheduler.shutdown()

        let handedOut = allocator.everHandedOut.withLock { $0 }
        for (address, stack) in results {
            #expect(stack.layout.usableRange.contains(address))
            #expect(handedOut.contains(stack.layout.usableRange))
        }
        #expect(Set(results.map(\.1)).count >= 100, "the suspended jobs each held their own stack")
        #expect(allocator.allocated.load(ordering: .relaxed) > 0)
        #expect(allocator.allocated.load(ordering: .relaxed) == allocator.released.load(ordering: .relaxed))
        #expect(allocator.live.withLock { $0.isEmpty })
        #expect(scheduler.fibers.isEmpty)
        #expect(scheduler.stats.pool.released == scheduler.stats.pool.created)
    }

    @Test("An allocator factory is called once per NUMA node, and its allocator serves that node's workers")
    func perNodeFactory() throws {
        let calls = Locked<[Int]>([])
        let allocator = CountingHeapAllocator()
        var config = testConfig(workers: 4, initial: 1, target: 1, unguarded: true)
        config.pinWorkers = false
        // Two fake nodes over the CPUs we have (pinning off: the CPU ids only label the workers).
        config.topology = CPUTopology(nodes: [.init(id: 0, cpus: [0]), .init(id: 1, cpus: [1])])
        config.allocatorFactory = { node throws(StackError) in
            calls.withLock { $0.append(node) }
            return allocator
        }
        let scheduler = try FiberScheduler(config: config)
        scheduler.shutdown()
        #expect(calls.withLock { $0.sorted() } == [0, 1])
        #expect(scheduler.allocators.keys.sorted() == [0, 1])
        #expect(scheduler.stats.workers.map(\.placement.node) == [0, 0, 1, 1])
        #expect(allocator.allocated.load(ordering: .relaxed) == 4)
        #expect(allocator.released.load(ordering: .relaxed) == 4)
    }

    @Test("shutdown(.drain) runs every queued job, then releases every stack (mmap allocator: live == 0)")
    func drain() throws {
        let allocator = try MmapStackAllocator()
        let scheduler = try FiberScheduler(config: testConfig(allocator: allocator))
        let ran = Atomic<Int>(0)
        let counter = scheduler.submit(batch: (0..<5000).map { _ in { @Sendable in ran.add(1, ordering: .relaxed) } })
        scheduler.shutdown(.drain)
        #expect(ran.load(ordering: .relaxed) == 5000)
        #expect(counter.value == 0)
        #expect(allocator.stats.live == 0)
        #expect(allocator.stats.allocations > 0)
        let late = scheduler.submit { 1 }
        #expect(throws: SchedulerError.shutDown) { try late.wait() }
        scheduler.shutdown(.drain)  // again: returns at once
    }

    @Test("After shutdown nothing keeps the scheduler alive: dropping it frees it and its allocators")
    func noCycleAfterShutdown() throws {
        weak var weakScheduler: FiberScheduler?
        weak var weakAllocator: MmapStackAllocator?
        do {
            let allocator = try MmapStackAllocator()
            let scheduler = try FiberScheduler(config: testConfig(allocator: allocator))
            weakScheduler = scheduler
            weakAllocator = allocator
            #expect(try scheduler.submit { FiberScheduler.current === scheduler }.wait())
            scheduler.shutdown()
        }
        #expect(weakScheduler == nil)
        #expect(weakAllocator == nil)
    }

    @Test("shutdown(.cancel) resumes suspended fibers (their frames unwind) and cancels queued jobs")
    func cancel() throws {
        let allocator = CountingHeapAllocator()
        let scheduler = try FiberScheduler(config: testConfig(workers: 1, initial: 2, target: 2, max: 8, allocator: allocator))
        let never = JobCounter(1)
        let deinits = Atomic<Int>(0)
        let started = Atomic<Int>(0)
        // 8 jobs suspend (the pool maximum); the other 12 stay queued.
        let handles = (0..<20).map { _ in
            scheduler.submit { () throws -> Void in
                let resource = FrameResource { deinits.add(1, ordering: .relaxed) }
                started.add(1, ordering: .relaxed)
                try never.wait()
                withExtendedLifetime(resource) {}
            }
        }
        #expect(eventually { started.load(ordering: .relaxed) == 8 })
        scheduler.shutdown(.cancel)
        for handle in handles {
            #expect(throws: SchedulerError.jobCancelled) { try handle.wait() }
        }
        #expect(started.load(ordering: .relaxed) == 8)
        #expect(deinits.load(ordering: .relaxed) == 8, "every suspended frame unwound")
        #expect(allocator.allocated.load(ordering: .relaxed) == allocator.released.load(ordering: .relaxed))
        // The counter the fibers waited on holds no waiter any more and can still be used.
        never.decrement()
        try never.wait()
    }

    @Test("Bad configurations are typed errors, and an allocator factory's error reaches init")
    func badConfigurations() throws {
        var config = testConfig()
        config.maxPoolSize = 0
        #expect(throws: SchedulerError.invalidConfiguration(field: "maxPoolSize", reason: "must be at least 1")) {
            try FiberScheduler(config: config)
        }
        config = testConfig(initial: 9, target: 8)
        #expect(throws: SchedulerError.self) { try FiberScheduler(config: config) }
        config = testConfig(target: 300, max: 200)
        #expect(throws: SchedulerError.self) { try FiberScheduler(config: config) }
        config = testConfig(workers: 0)
        #expect(throws: SchedulerError.self) { try FiberScheduler(config: config) }
        config = testConfig()
        config.usableSize = 0
        #expect(throws: SchedulerError.self) { try FiberScheduler(config: config) }
        config = testConfig()
        config.allocatorFactory = { _ throws(StackError) in throw StackError(message: "test", fix: "none") }
        #expect(throws: SchedulerError(StackError(message: "test", fix: "none"))) { try FiberScheduler(config: config) }
        // An initial pool the allocator cannot make: init stops the started workers and throws.
        let allocator = CountingHeapAllocator(limit: 3)
        #expect(throws: SchedulerError.self) {
            try FiberScheduler(config: testConfig(workers: 2, initial: 2, target: 2, allocator: allocator))
        }
        #expect(allocator.allocated.load(ordering: .relaxed) == allocator.released.load(ordering: .relaxed))
    }
}

@Suite("Stack sizes set in one place")
struct FixedShapeAllocatorTests {
    @Test("A scheduler on a slab takes the slab's stack size: FiberConfig(allocator: SlabStackAllocator()) starts")
    func slabDecidesTheSize() throws {
        let slab = try SlabStackAllocator()
        var config = FiberConfig(allocator: slab)
        config.workerCount = 1
        config.initialPoolSize = 1
        config.targetPoolSize = 1
        #expect(config.usableSize != slab.sizes.usableSize, "the default size differs from the slab's: the case at stake")
        let scheduler = try FiberScheduler(config: config)
        // The fiber's stack is the slab's shape, as the kernel and the registry see it.
        let bottom = try scheduler.submit { currentStackAddress() }.wait()
        let fiber = try #require(scheduler.fibers.first)
        #expect(fiber.stack.layout.sizes == slab.sizes)
        #expect(fiber.stack.layout.usableRange.contains(bottom))
        scheduler.shutdown()
    }
}
