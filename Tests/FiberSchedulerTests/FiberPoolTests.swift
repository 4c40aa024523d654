@_spi(Benchmarks) import OverflowDetection
@_spi(Benchmarks) import GuardPages
import CHeapProbe
import StackTestSupport
import FiberScheduler
import Glibc
import Synchronization
import Testing

@Suite("Fiber pools: initial size, idle growth, maximum, prefault")
struct FiberPoolTests {
    @Test("The pool starts at initialPoolSize and grows toward targetPoolSize while idle, one fiber at a time")
    func startsAtInitialAndGrowsToTarget() throws {
        let scheduler = try FiberScheduler(config: testConfig(initial: 3, target: 10, max: 12))
        defer { scheduler.shutdown() }
        // Fibers made at startup are the only ones not grown while idle: exactly `initial` per worker.
        for worker in 0..<2 {
            #expect(scheduler.fibers.filter { $0.worker == worker && !$0.grownWhileIdle }.count == 3)
        }
        #expect(eventually { scheduler.stats.workers.allSatisfy { $0.pool.size == 10 } })
        // At the target, growth stops: it never passes it on its own.
        usleep(50_000)
        for worker in scheduler.stats.workers {
            #expect(worker.pool.size == 10)
            #expect(worker.pool.created == 10)
            #expect(worker.pool.grownWhileIdle == 7)
            #expect(worker.pool.prefaulted == 0)
            #expect(worker.pool.inUse == 0)
        }
    }

    @Test("The pool never passes maxPoolSize: with .wait, extra jobs queue until a fiber is free")
    func neverPassesMaximumWhenWaiting() throws {
        let scheduler = try FiberScheduler(config: testConfig(initial: 2, target: 2, max: 6))
        let gate = JobCounter(1)
        let started = Atomic<Int>(0)
        let handles = (0..<40).map { _ in
            scheduler.submit { () throws -> Void in
                started.add(1, ordering: .relaxed)
                try gate.wait()
            }
        }
        #expect(eventually { started.load(ordering: .relaxed) == 12 })
        usleep(50_000)
        // 2 workers x 6 fibers are all suspended; the other 28 jobs wait in the queues.
        #expect(started.load(ordering: .relaxed) == 12)
        gate.decrement()
        for handle in handles { try handle.wait() }
        scheduler.shutdown()
        for worker in scheduler.stats.workers {
            #expect(worker.pool.peakInUse == 6)
            #expect(worker.pool.created <= 6)
        }
    }

    @Test("After a burst, an idle pool shrinks back to its target and its stacks' pages go back to the OS")
    func shrinksBackAfterBurst() throws {
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10))
        let scheduler = try FiberScheduler(config: testConfig(initial: 2, target: 4, max: 1_000, allocator: slab))
        defer { scheduler.shutdown() }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let burst = 600
        let gate = JobCounter(1)
        let handles = (0..<burst).map { _ in scheduler.submit { try gate.wait() } }
        #expect(eventually { scheduler.stats.pool.inUse == burst })
        // Every suspended fiber has touched its stack: the kernel holds at least a page of each.
        #expect(try slab.residentBytes() >= burst * page)
        gate.decrement()
        for handle in handles { try handle.wait() }
        #expect(eventually { scheduler.stats.workers.allSatisfy { $0.pool.size == 4 } })
        for worker in scheduler.stats.workers { #expect(worker.pool.released == worker.pool.created - 4) }
        // What mincore sees: the stacks of the 8 fibers kept, at most (released slots were madvised away).
        let resident = try slab.residentBytes()
        #expect(resident <= 8 * (64 << 10), "resident \(resident) bytes after shrinking")
        #expect(scheduler.fibers.count == 8)
    }

    @Test("Each fiber's label names its id, worker, CPU and node, in the guard registry the overflow handler reads")
    func labels() throws {
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10))
        let scheduler = try FiberScheduler(config: testConfig(initial: 12, target: 12, max: 12, allocator: slab))
        defer { scheduler.shutdown() }
        let placements = scheduler.stats.workers.map(\.placement)
        let fibers = scheduler.fibers
        #expect(fibers.count == 24)
        #expect(fibers.contains { $0.id >= 10 }, "ids of several digits")
        for fiber in fibers {
            let placement = placements[fiber.worker]
            let expected = "fiber \(fiber.id) on worker \(fiber.worker) (cpu \(placement.cpu), node \(placement.node))"
            #expect(fiber.label == expected)
            #expect(GuardRegistry.entry(forStackAt: fiber.stack.layout.usableBottom)?.label == expected)
        }
    }

    @Test("A fiber's bookkeeping on the heap is its object and one small control block", needsNoSanitizer)
    func heapBytesPerFiber() async throws {
        // In a child: what the heap holds for a scheduler whose pool starts at 4,112 fibers, less what it
        // holds for one whose pool starts at 16, per fiber (the heap counts every arena, so the worker's
        // allocations too). It prints what it saw; the check is here.
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            func heapBytes(poolSize: Int) throws -> Int {
                let slab = try SlabStackAllocator(.init(usableSize: 64 << 10))
                let before = Int(fs_test_heap_bytes_in_use())
                let scheduler = try FiberScheduler(
                    config: testConfig(workers: 1, initial: poolSize, target: poolSize, max: poolSize, allocator: slab))
                defer { scheduler.shutdown() }
                return Int(fs_test_heap_bytes_in_use()) - before
            }
            _ = try heapBytes(poolSize: 16)  // what any first scheduler allocates once
            let small = try heapBytes(poolSize: 16)
            let large = try heapBytes(poolSize: 4_112)
            say("per fiber \((large - small) / 4_096)")
        }
        let stderr = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        let seen = try #require(stderr.firstMatch(of: #/per fiber (-?\d+)/#), "\(stderr)")
        let perFiber = Int(String(seen.1))!
        // 288 B when measured: the object (136 B) and the control block with its label (82 B for these
        // ids) in malloc's 144 and 96-byte chunks, a slot in each of the worker's two fiber lists (their
        // capacity doubles: 32 B), and the slab's share. A third allocation per fiber, or a control block
        // in the next size class, goes past the limit.
        #expect(perFiber > 0 && perFiber <= 300, "\(perFiber) B of heap per fiber")
    }

    @Test("With .fail, a job that finds the pool exhausted fails with fiberPoolExhausted")
    func failsWhenExhausted() throws {
        var config = testConfig(workers: 1, initial: 1, target: 1, max: 2)
        config.whenExhausted = .fail
        let scheduler = try FiberScheduler(config: config)
        let gate = JobCounter(1)
        let waiting = (0..<2).map { _ in scheduler.submit { try gate.wait() } }
        #expect(eventually { scheduler.stats.pool.inUse == 2 })
        let refused = scheduler.submit { 1 }
        #expect(throws: SchedulerError.poolExhausted(worker: 0, maxPoolSize: 2)) { try refused.wait() }
        gate.decrement()
        for handle in waiting { try handle.wait() }
        scheduler.shutdown()
    }

    @Test(
        "With prefault on, stacks grown while idle are fully resident; with it off, untouched",
        arguments: [PrefaultStrategy.touch, .populate, .none])
    func grownStacksResidency(_ strategy: PrefaultStrategy) throws {
        var config = testConfig(initial: 1, target: 5, max: 5, allocator: try MmapStackAllocator())
        config.prefault = strategy
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        #expect(eventually { scheduler.stats.workers.allSatisfy { $0.pool.size == 5 } })
        let grown = scheduler.fibers.filter(\.grownWhileIdle)
        #expect(grown.count == 8)
        for fiber in grown {
            let report = try StackProbeReport(layout: fiber.stack.layout)
            #expect(fiber.prefault == strategy)
            #expect(report.residentGuardPages == 0)
            #expect(report.guardIsSound)
            let expected = strategy == .none ? 0 : report.usablePages
            #expect(report.residentUsablePages == expected, "\(fiber.label): \(report)")
        }
        #expect(scheduler.stats.pool.prefaulted == (strategy == .none ? 0 : 8))
    }

    @Test("With bindStacksToNode, grown and prefaulted stacks are on their worker's node (placement report)")
    func grownStacksPlacement() throws {
        var config = testConfig(initial: 1, target: 3, max: 3, allocator: try MmapStackAllocator())
        config.prefault = .populate
        config.bindStacksToNode = true
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        #expect(eventually { scheduler.stats.workers.allSatisfy { $0.pool.size == 3 } })
        let grown = scheduler.fibers.filter(\.grownWhileIdle)
        #expect(grown.count == 4)
        for fiber in grown {
            #expect(fiber.stack.node == fiber.node)
            let placement = try PlacementReport(range: fiber.stack.layout.usableRange, pageSize: fiber.stack.layout.pageSize)
            #expect(placement.present == placement.pages, "\(fiber.label): \(placement)")
            try placement.verify(on: [fiber.node])
        }
    }

    @Test("prefaultInitialPool prefaults the startup fibers too")
    func prefaultInitialPool() throws {
        var config = testConfig(initial: 3, target: 3, max: 3, allocator: try MmapStackAllocator())
        config.prefault = .populate
        config.prefaultInitialPool = true
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        for fiber in scheduler.fibers {
            let report = try StackProbeReport(layout: fiber.stack.layout)
            #expect(report.residentUsablePages == report.usablePages)
        }
    }

    @Test("Allocation failure while growing is logged and the pool goes on with what it has")
    func growthFailure() throws {
        let allocator = CountingHeapAllocator(limit: 5)
        let scheduler = try FiberScheduler(config: testConfig(workers: 1, initial: 2, target: 10, max: 10, allocator: allocator))
        #expect(eventually { scheduler.stats.pool.growthFailures == 1 })
        #expect(scheduler.stats.pool.size == 5)
        #expect(try scheduler.submit { 5 }.wait() == 5)
        scheduler.shutdown()
        #expect(allocator.released.load(ordering: .relaxed) == 5)
    }

    @Test("Allocation failure when a job needs a fiber is that job's error")
    func allocationFailureIsTheJobsError() throws {
        let allocator = CountingHeapAllocator(limit: 1)
        let scheduler = try FiberScheduler(config: testConfig(workers: 1, initial: 1, target: 1, max: 4, allocator: allocator))
        let gate = JobCounter(1)
        let first = scheduler.submit { try gate.wait() }
        #expect(eventually { scheduler.stats.pool.inUse == 1 })
        let second = scheduler.submit { 2 }
        #expect {
            try second.wait()
        } throws: { error in
            let error = error as? SchedulerError
            return error?.code == .stackFailed && error?.underlying?.code == .resourceExhausted
        }
        gate.decrement()
        try first.wait()
        scheduler.shutdown()
    }
}
