import CFiberContext
import Glibc
import Logging
import StackAllocators
import Synchronization

/// One scheduler thread: its job queue, its fiber pool, and the loop that runs them.
///
/// Loop order: resume fibers that became runnable (woken waits, yields); start one job (its own newest,
/// or another worker's oldest, same node first); otherwise, if shutting down and nothing is left, stop;
/// otherwise, once a park has timed out with nothing to do, grow the pool by one fiber while below
/// target, or give idle fibers back while above it; otherwise park until work arrives.
///
/// State used only on this worker's thread (by the loop, and by the fibers it runs, which are on the same
/// thread) lives in `ThreadState`, in raw memory: it needs no lock, costs no exclusivity bookkeeping on the
/// hot path, and no access to it can stay open across a fiber switch.
final class Worker: @unchecked Sendable {
    /// Index in the scheduler, from 0.
    let index: Int
    /// CPU and node.
    let placement: CPUTopology.Placement
    /// The scheduler; kept alive by this worker's thread for as long as it runs.
    unowned(unsafe) let scheduler: FiberScheduler
    /// Jobs not yet started.
    let jobs = JobQueue()
    /// Counters for stats.
    let counters = WorkerCounters()
    /// Its live fibers.
    let fiberRegistry = FiberRegistry()
    /// The end of its fibers' labels, " on worker 1 (cpu 1, node 0)", in UTF-8 (made once).
    let labelSuffix: [UInt8]
    /// Whether the worker is parked or about to park (so submitters know whom to wake).
    let isSleeping = Atomic<Bool>(false)
    /// Other workers to steal from, same node first. Set before the threads start; unowned, so that
    /// workers do not keep each other alive (the scheduler owns them all).
    var victims: [Peer] = []
    private let parker = Parker()
    /// Waits of its fibers that ended on other threads (a counter reached zero), to claim and resume.
    private let readyFromOthers = Lock<[FiberWait]>([])
    private let readyCount = Atomic<Int>(0)
    private let pool: FiberPool
    private let local = UnsafeMutablePointer<ThreadState>.allocate(capacity: 1)

    private struct ThreadState {
        /// The fiber running now, nil while the worker's own loop runs. Unowned: the pool owns it.
        unowned(unsafe) var currentFiber: Fiber?
        /// The switches into and out of its fibers.
        var switches = FiberSwitches()
        /// Fibers that yielded, to resume after the work already waiting.
        var localReady: [Fiber] = []
        /// An empty buffer with capacity, swapped with `localReady` so a yield allocates nothing.
        var spareReady: [Fiber] = []
        /// Whether the worker's last park timed out and it has run nothing since: only then does its pool
        /// grow or shrink toward its target. Growing right at startup would take the CPUs that the first
        /// jobs (and the thread waiting for them) need; shrinking in a pause between bursts would free
        /// fibers that the next burst makes again.
        var quiet = false
        /// Parks in a row that timed out with nothing to do: each doubles the next park's timeout (see
        /// `longestParkDoublings`).
        var quietParks = 0
        /// Fibers suspended in a wait.
        var suspendedCount = 0
        /// Jobs ended here and not yet subtracted from the scheduler's outstanding count: it is shared by
        /// every worker, so it is settled once per burst of work (when the worker runs dry), not per job.
        var endedJobs = 0
        /// Jobs ended here and not yet subtracted from their counter.
        var settlement = JobSettlement()
    }

    init(index: Int, placement: CPUTopology.Placement, scheduler: FiberScheduler, allocator: any StackAllocator) {
        self.index = index
        self.placement = placement
        self.scheduler = scheduler
        labelSuffix = Array(" on worker \(index) (cpu \(placement.cpu), node \(placement.node))".utf8)
        local.initialize(to: ThreadState())
        pool = FiberPool(config: scheduler.config, allocator: allocator, counters: counters)
        pool.owner = self
    }

    deinit {
        local.deinitialize(count: 1)
        local.deallocate()
    }

    /// The fiber running now on this worker (call on the worker's thread only).
    var currentFiber: Fiber? { local.pointee.currentFiber }
    /// The switches into and out of its fibers.
    private var switches: UnsafeMutablePointer<FiberSwitches> { local.pointer(to: \.switches)! }

    /// The worker whose thread is calling, if any.
    static var current: Worker? {
        fs_current_worker().map { Unmanaged<Worker>.fromOpaque($0).takeUnretainedValue() }
    }

    /// The thread's whole life. `started` is told once the initial pool exists (or failed).
    func threadMain(started: JobCounter) {
        // Per-thread setup: everything a thread needs before it runs a fiber happens here, once.
        if scheduler.config.overflowDetection {
            do {
                // Without it the overflow handler cannot run on an overflowed stack.
                try AlternateSignalStack.installForCurrentThread()
            } catch {
                scheduler.logger.error(
                    "no alternate signal stack: a fiber overflow on this worker dies without its diagnostic",
                    metadata: ["worker": "\(index)", "error": "\(error)"])
            }
        }
        fs_set_current_worker(Unmanaged.passUnretained(self).toOpaque())
        local.pointee.switches.returnTarget.tsan_fiber = fs_sanitizer_current_fiber()
        if case .failure(let errno) = WorkerThread.setName("fs-worker-\(index)") {
            scheduler.logger.debug("naming a worker thread failed", metadata: ["worker": "\(index)", "errno": "\(errno)"])
        }
        if scheduler.config.pinWorkers { pin() }
        do {
            try pool.fillInitial()
            started.decrement()
        } catch {
            scheduler.logger.error("making the initial fiber pool failed", metadata: ["worker": "\(index)", "error": "\(error)"])
            started.decrement(failing: error)
        }

        runLoop()

        // Teardown: every fiber is idle now; their stacks go back to the allocator from this thread.
        pool.releaseAll()
        fs_set_current_worker(nil)
    }

    private func pin() {
        switch Syscall.setThreadAffinity([placement.cpu]) {
        case .success: counters.pinned.store(true, ordering: .relaxed)
        case .failure(let errno):
            scheduler.logger.warning(
                "pinning a worker failed; it runs unpinned",
                metadata: ["worker": "\(index)", "cpu": "\(placement.cpu)", "errno": "\(errno)"])
        }
    }

    private func runLoop() {
        while true {
            resumeReadyFibers()
            if scheduler.isCancelling { cancelLocalWork() }
            if let job = nextJob() {
                start(job)
                continue
            }
            local.pointee.settlement.settle()
            if !local.pointee.localReady.isEmpty || readyCount.load(ordering: .acquiring) > 0 { continue }
            settleEndedJobs()
            if scheduler.isShuttingDown {
                if scheduler.isFinished { return }
            } else if local.pointee.quiet && (pool.growWhileIdle() || pool.shrinkWhileIdle()) {
                continue
            }
            local.pointee.quiet = !sleep()
            local.pointee.quietParks = local.pointee.quiet ? local.pointee.quietParks + 1 : 0
            if local.pointee.quiet { jobs.releaseSpareCapacity() }
        }
    }

    // MARK: Fibers

    /// Resumes every fiber that was runnable when called (yields first, then wake-ups).
    private func resumeReadyFibers() {
        let othersReady = readyCount.load(ordering: .acquiring) > 0
        guard othersReady || !local.pointee.localReady.isEmpty else { return }
        var batch: [Fiber] = []
        swap(&batch, &local.pointee.spareReady)
        swap(&batch, &local.pointee.localReady)
        for fiber in batch { run(fiber, .signalled) }
        batch.removeAll(keepingCapacity: true)
        local.pointee.spareReady = batch
        guard othersReady else { return }
        let woken = readyFromOthers.withLock { ready in
            defer { ready = [] }
            return ready
        }
        readyCount.subtract(woken.count, ordering: .relaxed)
        // Claimed here, on the worker, not by the thread that woke them: a million waits of one counter are
        // claimed by every worker at once, each while it touches the fiber anyway.
        for wait in woken where wait.fiber.claimWait(wait.number) {
            wait.fiber.isSuspended = false
            local.pointee.suspendedCount -= 1
            run(wait.fiber, .signalled)
        }
    }

    /// Called from any thread when waits of this worker's fibers ended. Takes them out of `waits` (its
    /// buffer as it is, when none are pending already: nothing is copied).
    func makeReady(_ waits: inout [FiberWait]) {
        let count = waits.count
        readyFromOthers.withLock { ready in
            if ready.isEmpty {
                swap(&ready, &waits)
            } else {
                ready.append(contentsOf: waits)
                waits.removeAll()
            }
        }
        readyCount.add(count, ordering: .releasing)
        parker.unpark()
    }

    /// Called on the fiber: parks it until its wait is claimed (`Fiber.claimWait(_:)`). Returns how it was
    /// resumed.
    func suspend(_ fiber: Fiber) -> ResumeReason {
        fiber.isSuspended = true
        local.pointee.suspendedCount += 1
        bump(counters.suspensions)
        return Fiber.switchOut(switches, .suspended)
    }

    /// Called on the fiber: lets the worker run what is queued, then continues.
    func yield() {
        _ = Fiber.switchOut(switches, .yielded)
    }

    private func run(_ fiber: Fiber, _ reason: ResumeReason) {
        // A resumed fiber runs code of its own, as long as it likes: the counters of the jobs that ended
        // before it are signed off on first.
        if reason != .run { local.pointee.settlement.settle() }
        local.pointee.quiet = false
        local.pointee.currentFiber = fiber
        let exit = fiber.resume(reason, switches)
        if scheduler.isForkedAway { Self.endForkedChild() }
        local.pointee.currentFiber = nil
        switch exit {
        case .finished:
            if let counter = local.pointee.switches.endedCounter.take() { local.pointee.settlement.add(counter) }
            pool.recycle(fiber)
            bump(counters.jobsRun)
            local.pointee.endedJobs += 1
        case .suspended:
            break  // whoever claims its wait brings it back: a counter reaching zero, or cancellation
        case .yielded:
            local.pointee.localReady.append(fiber)
        }
    }

    /// Ends a child made by fork(2) in one of this scheduler's jobs, once that job comes back to its worker
    /// (it returned, waited or yielded). The child has this one worker thread and none of the others: going
    /// on would run again jobs the parent runs, and wait forever for locks and jobs held by threads the child
    /// does not have. Writes the cause with write(2), not the logger, whose lock another thread of the parent
    /// may have held at the fork.
    private static func endForkedChild() -> Never {
        let message = "fiberstacks: a FiberScheduler job called fork(), and in the child the job went back to the "
            + "scheduler (it returned, waited or yielded); the child has none of the scheduler's other worker "
            + "threads, so it exits with status 70. End the child inside the job: exec, or _exit.\n"
        var bytes = Array(message.utf8)
        // The child exits either way: a failed write has no one left to tell.
        _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        _exit(70)
    }

    // MARK: Jobs

    /// A job to start now, or nil. With `.wait` and no fiber to spare, jobs stay queued for thieves. Where
    /// no job is outstanding at all, it looks at no peer (see `workVisible`).
    private func nextJob() -> Job? {
        guard pool.canProvideFiber || scheduler.config.whenExhausted == .fail else { return nil }
        if !jobs.looksEmpty, let job = jobs.popNewest() { return job }
        if scheduler.isFinished { return nil }
        for victim in victims where !victim.worker.jobs.looksEmpty {
            // Half the victim's queue at once: a burst pushed on one worker spreads in a few steals.
            let stolen = victim.worker.jobs.stealOldestHalf()
            guard let first = stolen.first else { continue }
            bump(counters.jobsStolen, by: stolen.count)
            jobs.push(contentsOf: stolen.dropFirst())
            return first
        }
        return nil
    }

    private func start(_ job: Job) {
        if !local.pointee.settlement.continues(job.counterIdentity) { local.pointee.settlement.settle() }
        if scheduler.isCancelling { return end(job, .jobCancelled) }
        let fiber: Fiber
        do throws(StackError) {
            guard let taken = try pool.acquire() else {
                return end(job, .poolExhausted(worker: index, maxPoolSize: scheduler.config.maxPoolSize))
            }
            fiber = taken
        } catch {
            scheduler.logger.error("no fiber for a job: making one failed", metadata: ["worker": "\(index)", "error": "\(error)"])
            return end(job, SchedulerError(error))
        }
        local.pointee.switches.job = job
        run(fiber, .run)
    }

    /// Tells the scheduler how many jobs ended here since the last call.
    private func settleEndedJobs() {
        guard local.pointee.endedJobs > 0 else { return }
        scheduler.jobsEnded(local.pointee.endedJobs)
        local.pointee.endedJobs = 0
    }

    /// Ends a job that never ran.
    private func end(_ job: Job, _ error: SchedulerError) {
        job.cancel(error)
        scheduler.jobsEnded()
    }

    /// Shutdown with `.cancel`: queued jobs end with `.jobCancelled`; suspended fibers are resumed with
    /// `.cancelled` so their waits throw and their frames unwind normally.
    private func cancelLocalWork() {
        while let job = jobs.popNewest() { end(job, .jobCancelled) }
        guard local.pointee.suspendedCount > 0 else { return }
        let waiting = fiberRegistry.map { $0 }.filter(\.isSuspended)
        for fiber in waiting where fiber.claimCurrentWait() {
            fiber.isSuspended = false
            local.pointee.suspendedCount -= 1
            run(fiber, .cancelled)
        }
    }

    // MARK: Sleeping

    /// Wakes the worker (from any thread); a no-op when it is awake, apart from one atomic exchange.
    func unpark() { parker.unpark() }

    /// How many times an idle worker looks for work (with a CPU spin hint between looks, some
    /// microseconds in all) before it parks: work that arrives meanwhile costs its producer no wake-up
    /// syscall and this worker no sleep.
    static let spinChecks = 256

    /// Parks unless work is visible, after polling for it briefly (for work on its own node only: a
    /// thief on another node comes when a producer wakes it, so same-node thieves go first). It polls
    /// only where it may pay: not once a park timed out with nothing done since (an idle scheduler costs
    /// one look per worker per timeout, not `spinChecks`, each over every peer), and not where workers
    /// outnumber the CPUs they run on (a poll would hold a CPU that a worker with work needs). Pairs with
    /// `FiberScheduler.wake`: each side publishes its write (the sleeping flag, the queued job)
    /// before a sequentially consistent fence and reads the other's after it, so at least one of them
    /// sees the other. Returns false when the park timed out with nothing to do.
    private func sleep() -> Bool {
        isSleeping.store(true, ordering: .sequentiallyConsistent)
        scheduler.sleepers.add(1, ordering: .sequentiallyConsistent)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        defer {
            scheduler.sleepers.subtract(1, ordering: .sequentiallyConsistent)
            isSleeping.store(false, ordering: .relaxed)
        }
        if !local.pointee.quiet && scheduler.workersFitCPUs {
            for _ in 0..<Self.spinChecks {
                if workVisible(acrossNodes: false) { return true }
                fs_cpu_relax()
            }
        }
        if workVisible(acrossNodes: true) { return true }
        // The timeout is a safety net (every producer of work unparks) and the pool's cue to grow or
        // shrink; an idle worker lengthens it, so many idle workers do not keep the CPUs waking.
        return parker.park(timeoutNanoseconds: Self.shortestPark << min(local.pointee.quietParks, Self.longestParkDoublings))
    }

    /// The first park's timeout after work, in nanoseconds: 100 ms.
    static let shortestPark = 100_000_000
    /// Times the timeout doubles while the worker stays idle: up to 1.6 s.
    static let longestParkDoublings = 4

    /// Whether this worker has something to do: a fiber to resume, a job it may start (its own, or one to
    /// steal on its node or, with `acrossNodes`, on any), or the end. With `acrossNodes` (the last look
    /// before parking) it looks at its peers only where a job is outstanding at all: one load instead of
    /// a look at every peer, which is what an idle scheduler of many workers would spend its CPUs on.
    /// Submitters count a job before they queue it, and read the sleepers after: either they see this
    /// worker sleeping or it sees their count (and then their job).
    private func workVisible(acrossNodes: Bool) -> Bool {
        if readyCount.load(ordering: .acquiring) > 0 || (scheduler.isShuttingDown && scheduler.isFinished) { return true }
        guard pool.canProvideFiber || scheduler.config.whenExhausted == .fail else { return false }
        if !jobs.looksEmpty { return true }
        if acrossNodes && scheduler.isFinished { return false }
        return victims.contains {
            (acrossNodes || $0.worker.placement.node == placement.node) && !$0.worker.jobs.looksEmpty
        }
    }

    /// A snapshot of this worker's counters.
    var stats: WorkerStats {
        WorkerStats(
            index: index, placement: placement, pinned: counters.pinned.load(ordering: .relaxed), pool: counters.pool,
            jobsRun: counters.jobsRun.load(ordering: .relaxed), jobsStolen: counters.jobsStolen.load(ordering: .relaxed),
            suspensions: counters.suspensions.load(ordering: .relaxed))
    }
}

/// Another worker, held without a reference count.
struct Peer {
    unowned(unsafe) let worker: Worker
}
