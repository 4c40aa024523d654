import CHeapProbe
import StackTestSupport
import FiberScheduler
import Glibc
import Synchronization
import Testing

struct Boom: Error, Equatable {
    let code: Int
}

@Suite("Jobs, counters and waits")
struct JobTests {
    @Test("A job's value comes back from a thread, and its error reaches the waiter")
    func valueAndError() throws {
        let scheduler = try FiberScheduler(config: testConfig())
        defer { scheduler.shutdown() }
        #expect(try scheduler.submit { 6 * 7 }.wait() == 42)
        let failing = scheduler.submit { () throws -> Int in throw Boom(code: 7) }
        #expect(throws: Boom(code: 7)) { try failing.wait() }
        #expect(failing.isFinished)
        #expect(failing.counter.error as? Boom == Boom(code: 7))
    }

    @Test("100,000 jobs with nested waits complete with the right result")
    func hundredThousandNestedJobs() throws {
        let scheduler = try FiberScheduler(config: testConfig())
        let sum = Atomic<Int>(0)
        let (parents, children) = (100, 1000)
        // Root -> 100 parents (batch, waited on) -> 1000 children each (batch, waited on).
        let root = scheduler.submit { () throws -> Int in
            let scheduler = try #require(FiberScheduler.current)
            let parentsDone = scheduler.submit(batch: (0..<parents).map { parent in
                { @Sendable () throws -> Void in
                    let childrenDone = scheduler.submit(batch: (0..<children).map { child in
                        { @Sendable in sum.add(parent * children + child, ordering: .relaxed) }
                    })
                    try childrenDone.wait()
                }
            })
            try parentsDone.wait()
            return sum.load(ordering: .relaxed)
        }
        let total = parents * children
        #expect(try root.wait() == total * (total - 1) / 2)
        scheduler.shutdown()
        #expect(scheduler.stats.jobsRun == total + parents + 1)
        #expect(scheduler.stats.workers.map(\.suspensions).reduce(0, +) >= 1)
    }

    @Test("Waiting inside a job does not block its worker: 64 waiting jobs on 2 workers")
    func waitingDoesNotBlockWorkers() throws {
        let scheduler = try FiberScheduler(config: testConfig())
        let gate = JobCounter(1)
        let started = Atomic<Int>(0)
        let handles = (0..<64).map { index in
            scheduler.submit { () throws -> Int in
                started.add(1, ordering: .relaxed)
                try gate.wait()
                return index
            }
        }
        // With blocking waits only 2 of them could ever start; with fibers all 64 suspend.
        let allStarted = eventually { started.load(ordering: .relaxed) == 64 }
        gate.decrement()
        #expect(allStarted, "only \(started.load(ordering: .relaxed)) of 64 waiting jobs started")
        #expect(try handles.map { try $0.wait() } == Array(0..<64))
        scheduler.shutdown()
        #expect(scheduler.workerCount == 2)
        #expect(scheduler.stats.workers.map(\.suspensions).reduce(0, +) >= 62)
    }

    @Test("Async code awaits a job and a counter through continuations")
    func asyncWaits() async throws {
        let scheduler = try FiberScheduler(config: testConfig())
        let value = try await scheduler.submit { "fiber" }.value
        #expect(value == "fiber")
        let counter = JobCounter()
        let hits = Atomic<Int>(0)
        for _ in 0..<100 { scheduler.submit(counter: counter) { hits.add(1, ordering: .relaxed) } }
        try await counter.wait()
        #expect(hits.load(ordering: .relaxed) == 100)
        await #expect(throws: Boom(code: 3)) { try await scheduler.submit { () throws -> Int in throw Boom(code: 3) }.value }
        scheduler.shutdown()
    }

    @Test("A counter keeps the first error of its jobs and rethrows it to every waiter")
    func counterError() throws {
        let scheduler = try FiberScheduler(config: testConfig())
        defer { scheduler.shutdown() }
        let counter = scheduler.submit(batch: [{}, { throw Boom(code: 1) }, {}])
        #expect(throws: Boom(code: 1)) { try counter.wait() }
        let inner = scheduler.submit { () throws -> Bool in
            do {
                try counter.wait()
                return false
            } catch let error as Boom {
                return error.code == 1
            }
        }
        #expect(try inner.wait())
    }

    @Test("parallelFor visits every index once and reports a failing chunk")
    func parallelFor() throws {
        let scheduler = try FiberScheduler(config: testConfig())
        defer { scheduler.shutdown() }
        let box = VisitBox(count: 10_000)
        try scheduler.parallelFor(0..<10_000) { index in box.visit(index) }
        #expect(box.allVisitedOnce)
        #expect(throws: Boom(code: 500)) {
            try scheduler.parallelFor(0..<1000, chunkSize: 10) { index in
                if index == 500 { throw Boom(code: 500) }
            }
        }
        // From inside a job: the fiber suspends while the chunks run.
        let nested = scheduler.submit { () throws -> Int in
            let sum = Atomic<Int>(0)
            try FiberScheduler.current!.parallelFor(0..<1000) { sum.add($0, ordering: .relaxed) }
            return sum.load(ordering: .relaxed)
        }
        #expect(try nested.wait() == 499_500)
    }

    @Test("parallelFor takes any range: chunks end at Int.max without overflowing, a range of more than Int.max indices is chunked, and a tiny chunk size over a huge range is raised to at most maximumChunks chunks")
    func parallelForAtTheEdges() throws {
        let scheduler = try FiberScheduler(config: testConfig())
        defer { scheduler.shutdown() }
        for chunkSize in [nil, 1, 4, Int.max] {
            let box = VisitBox(count: 10)
            try scheduler.parallelFor((Int.max - 10)..<Int.max, chunkSize: chunkSize) { index in box.visit(index - (Int.max - 10)) }
            #expect(box.allVisitedOnce, "chunkSize \(String(describing: chunkSize))")
            let low = VisitBox(count: 10)
            try scheduler.parallelFor(Int.min..<(Int.min + 10), chunkSize: chunkSize) { index in low.visit(index - Int.min) }
            #expect(low.allVisitedOnce, "chunkSize \(String(describing: chunkSize))")
        }
        // One index per chunk over 4 Mi indices would be 4 Mi closures: raised to 4 indices per chunk, as
        // many jobs as one index per chunk over maximumChunks indices.
        func jobs(_ count: Int) throws -> Int {
            let before = scheduler.stats.jobsRun
            let visited = Atomic<Int>(0)
            try scheduler.parallelFor(0..<count, chunkSize: 1) { _ in visited.add(1, ordering: .relaxed) }
            #expect(visited.load(ordering: .relaxed) == count)
            return scheduler.stats.jobsRun - before
        }
        let most = try jobs(FiberScheduler.maximumChunks)
        #expect(try jobs(4 * FiberScheduler.maximumChunks) == most)
        #expect(try jobs(1000) >= 1000, "one index per chunk below the cap is one job per index")
        // Every chunk of the whole Int range throws at its first index: it is chunked, not trapped on.
        let firsts = Locked<[Int]>([])
        #expect(throws: Boom(code: 7)) {
            try scheduler.parallelFor(Int.min..<Int.max) { index in
                firsts.withLock { $0.append(index) }
                throw Boom(code: 7)
            }
        }
        // Two workers: about four chunks each (2^64 - 1 indices do not divide by 8: a ninth holds the rest).
        let starts = firsts.withLock { $0.sorted() }
        #expect((8...9).contains(starts.count) && starts.first == Int.min, "\(starts)")
    }

    @Test("Idle workers steal queued jobs from a busy one")
    func stealing() throws {
        let scheduler = try FiberScheduler(config: testConfig())
        let stolen = Atomic<Bool>(false)
        let parent = scheduler.submit { () throws -> Void in
            let scheduler = FiberScheduler.current!
            let home = FiberScheduler.currentFiber!.worker
            let deadline = now() + 10
            let done = scheduler.submit(batch: (0..<32).map { _ in
                { @Sendable in
                    if FiberScheduler.currentFiber!.worker != home { stolen.store(true, ordering: .relaxed) }
                    // Keep the home worker's thread busy, so the other jobs stay queued until another worker
                    // steals one (yielding here would let the home worker start them all).
                    while !stolen.load(ordering: .relaxed) && now() < deadline {}
                }
            })
            try done.wait()
        }
        try parent.wait()
        scheduler.shutdown()
        let sawSteal = stolen.load(ordering: .relaxed)
        #expect(sawSteal)
        #expect(scheduler.stats.workers.map(\.jobsStolen).reduce(0, +) >= 1)
    }

    @Test("A thief on the busy worker's node is woken first")
    func stealingPrefersTheSameNode() throws {
        var config = testConfig(workers: 4, initial: 2, target: 2)
        config.pinWorkers = false
        // Two fake nodes: workers 0 and 1 on node 0, workers 2 and 3 on node 1.
        config.topology = CPUTopology(nodes: [.init(id: 0, cpus: [0]), .init(id: 1, cpus: [1])])
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        // Let every worker reach its first park: an awake worker steals from any node when it finds
        // its own node idle, which is right but is not what this test looks at. (A loaded machine can
        // take longer than any fixed sleep to get there; the last few microseconds of spinning before
        // the park are covered by the short sleep after.)
        #expect(eventually { scheduler.sleepingWorkers == 4 })
        usleep(20_000)
        let firstThief = Atomic<Int>(-1)
        let parent = scheduler.submit { () throws -> Int in
            let home = FiberScheduler.currentFiber!.worker
            let deadline = now() + 10
            try FiberScheduler.current!.submit(batch: (0..<8).map { _ in
                { @Sendable in
                    let worker = FiberScheduler.currentFiber!.worker
                    if worker != home { _ = firstThief.compareExchange(expected: -1, desired: worker, ordering: .relaxed) }
                    while firstThief.load(ordering: .relaxed) == -1 && now() < deadline {}
                }
            }).wait()
            return home
        }
        let home = try parent.wait()
        let thief = firstThief.load(ordering: .relaxed)
        let nodes = scheduler.stats.workers.map(\.placement.node)
        #expect(thief >= 0, "no worker stole")
        #expect(thief >= 0 && nodes[thief] == nodes[home], "first thief: worker \(thief), home: worker \(home)")
    }

    @Test("A yielding job lets its worker run the other jobs")
    func yielding() throws {
        let scheduler = try FiberScheduler(config: testConfig(workers: 1))
        defer { scheduler.shutdown() }
        let other = Atomic<Bool>(false)
        let observed = scheduler.submit { () throws -> Bool in
            let scheduler = FiberScheduler.current!
            scheduler.submit { other.store(true, ordering: .relaxed) }
            // One worker: the other job can only run while this one yields.
            for _ in 0..<1000 where !other.load(ordering: .relaxed) { FiberScheduler.yield() }
            return other.load(ordering: .relaxed)
        }
        #expect(try observed.wait())
        #expect(FiberScheduler.currentFiber == nil)
        #expect(FiberScheduler.current == nil)
    }

    @Test("A counter reaches zero when its last job ends, not when its worker finishes the next, unrelated job")
    func counterSettlesBeforeOtherWork() throws {
        let scheduler = try FiberScheduler(config: testConfig(workers: 1))
        defer { scheduler.shutdown() }
        // Hold the one worker until both are queued, so it runs the batch (the newest jobs) and then the
        // long job, on the same thread.
        let gate = Gate()
        let held = holdWorker(scheduler, until: gate)
        let long = scheduler.submit { usleep(1_000_000) }
        let batch = scheduler.submit(batch: [@Sendable () throws -> Void](repeating: {}, count: 100))
        gate.open()
        let start = ContinuousClock.now
        try batch.wait()
        let waited = ContinuousClock.now - start
        #expect(waited < .milliseconds(500), "the batch's counter reached zero after \(waited)")
        try held.wait()
        _ = try long.wait()
    }

    @Test("A counter reaches zero when its last job ends, not when its worker finishes the fiber it resumes next")
    func counterSettlesBeforeResumedFiber() throws {
        let scheduler = try FiberScheduler(config: testConfig(workers: 1))
        defer { scheduler.shutdown() }
        let gate = JobCounter(1)
        let long = scheduler.submit {
            try gate.wait()
            usleep(1_000_000)
        }
        while scheduler.stats.workers[0].suspensions < 1 { sched_yield() }
        // The newest job runs first: the one that wakes the long job ends the batch, and the worker's next
        // step is resuming it.
        let bodies: [@Sendable () throws -> Void] = [{ gate.decrement() }] + Array(repeating: {}, count: 9)
        let start = ContinuousClock.now
        try scheduler.submit(batch: bodies).wait()
        let waited = ContinuousClock.now - start
        #expect(waited < .milliseconds(500), "the batch's counter reached zero after \(waited)")
        try long.wait()
    }

    @Test("A batch's closures are queued as the array holds them: no allocation per job", needsNoSanitizer)
    func batchAllocatesNothingPerJob() async throws {
        // In a child, on its main thread: the probe reads the main heap arena, where only that thread is
        // sure to allocate. It prints what it saw; the checks are here.
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let seen = fs_test_heap_bytes_in_use()
            let probe = UnsafeMutableRawPointer.allocate(byteCount: 100_000, alignment: 16)
            let probeSeen = Int(fs_test_heap_bytes_in_use()) - Int(seen)
            probe.deallocate()
            let scheduler = try FiberScheduler(config: testConfig(workers: 1))
            defer { scheduler.shutdown() }
            let bodies = [@Sendable () throws -> Void](repeating: {}, count: 10_000)
            // Once through, so the worker's queue has grown to hold a whole batch.
            try scheduler.submit(batch: bodies).wait()
            let gate = Gate()
            let held = holdWorker(scheduler, until: gate)
            // The worker is held: the batch's jobs stay queued while the heap is read.
            let before = fs_test_heap_bytes_in_use()
            let batch = scheduler.submit(batch: bodies)
            let heldBytes = Int(fs_test_heap_bytes_in_use()) - Int(before)
            gate.open()
            try held.wait()
            try batch.wait()
            say("probe \(probeSeen) held \(heldBytes)")
        }
        let stderr = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        let seen = try #require(stderr.firstMatch(of: #/probe (-?\d+) held (-?\d+)/#), "\(stderr)")
        try #require(Int(String(seen.1))! >= 100_000, "the heap probe reads the main arena, and the child allocated elsewhere")
        #expect(Int(String(seen.2))! < 80_000, "\(seen.2) B still allocated for 10,000 queued jobs")
    }
}

/// Per-index visit counts for parallelFor.
final class VisitBox: Sendable {
    private let visits: Locked<[Int]>
    init(count: Int) { visits = Locked([Int](repeating: 0, count: count)) }
    func visit(_ index: Int) { visits.withLock { $0[index] += 1 } }
    var allVisitedOnce: Bool { visits.withLock { $0.allSatisfy { $0 == 1 } } }
}
