import CFiberContext
import Logging
import StackAllocators
import Synchronization

/// One scheduler thread: its job queue, its fiber pool, and the loop that runs them.
///
/// Loop order: resume fibers that became runnable (woken waits, yields); start one job (its own newest,
/// or another worker's oldest, same node first); otherwise, if shutting down and nothing is left, stop;
/// otherwise grow the pool by one fiber while below target; otherwise park until work arrives.
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
    /// Whether the worker is parked or about to park (so submitters know whom to wake).
    let isSleeping = Atomic<Bool>(false)
    /// Other workers to steal from, same node first. Set before the threads start; unowned, so that
    /// workers do not keep each other alive (the scheduler owns them all).
    var victims: [Peer] = []
    private let parker = Parker()
    /// Fibers made runnable by other threads (a counter reached zero).
    private let readyFromOthers = Lock<[Fiber]>([])
    private let readyCount = Atomic<Int>(0)
    private let pool: FiberPool
    private let local = UnsafeMutablePointer<ThreadState>.allocate(capacity: 1)

    private struct ThreadState {
        /// The fiber running now, nil while the worker's own loop runs. Unowned: the pool owns it.
        unowned(unsafe) var currentFiber: Fiber?
        /// This thread's sanitizer handle (TSan), for fibers switching back.
        var sanitizerFiber: UnsafeMutableRawPointer?
        /// Fibers that yielded, to resume after the work already waiting.
        var localReady: [Fiber] = []
        /// An empty buffer with capacity, swapped with `localReady` so a yield allocates nothing.
        var spareReady: [Fiber] = []
        /// Fibers suspended in a wait, by fiber.
        var suspended: [ObjectIdentifier: FiberWaiter] = [:]
    }

    init(index: Int, placement: CPUTopology.Placement, scheduler: FiberScheduler, allocator: any StackAllocator) {
        self.index = index
        self.placement = placement
        self.scheduler = scheduler
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
    /// This thread's sanitizer handle (TSan), for fibers switching back.
    var sanitizerFiber: UnsafeMutableRawPointer? { local.pointee.sanitizerFiber }

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
        local.pointee.sanitizerFiber = fs_sanitizer_current_fiber()
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
            if !local.pointee.localReady.isEmpty || readyCount.load(ordering: .acquiring) > 0 { continue }
            if scheduler.isShuttingDown {
                if scheduler.isFinished { return }
            } else if pool.growWhileIdle() {
                continue
            }
            sleep()
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
        if othersReady {
            let woken = readyFromOthers.withLock { ready in
                defer { ready = [] }
                return ready
            }
            readyCount.subtract(woken.count, ordering: .relaxed)
            for fiber in woken { local.pointee.suspended[ObjectIdentifier(fiber)] = nil }
            batch += woken
        }
        for fiber in batch { run(fiber, .signalled) }
        batch.removeAll(keepingCapacity: true)
        local.pointee.spareReady = batch
    }

    /// Called from any thread when a fiber of this worker may continue.
    func makeReady(_ fiber: Fiber) {
        readyFromOthers.withLock { $0.append(fiber) }
        readyCount.add(1, ordering: .releasing)
        parker.unpark()
    }

    /// Called on the fiber: parks it until `waiter` is claimed. Returns how it was resumed.
    func suspend(_ fiber: Fiber, until waiter: FiberWaiter) -> ResumeReason {
        local.pointee.suspended[ObjectIdentifier(fiber)] = waiter
        bump(counters.suspensions)
        return fiber.switchOut(.suspended)
    }

    /// Called on the fiber: lets the worker run what is queued, then continues.
    func yield(_ fiber: Fiber) {
        _ = fiber.switchOut(.yielded)
    }

    private func run(_ fiber: Fiber, _ reason: ResumeReason) {
        local.pointee.currentFiber = fiber
        let exit = fiber.resume(reason)
        local.pointee.currentFiber = nil
        switch exit {
        case .finished:
            pool.recycle(fiber)
            bump(counters.jobsRun)
            scheduler.jobEnded()
        case .suspended:
            break  // its FiberWaiter brings it back: a counter reaching zero, or cancellation
        case .yielded:
            local.pointee.localReady.append(fiber)
        }
    }

    // MARK: Jobs

    /// A job to start now, or nil. With `.wait` and no fiber to spare, jobs stay queued for thieves.
    private func nextJob() -> Job? {
        guard pool.canProvideFiber || scheduler.config.whenExhausted == .fail else { return nil }
        if !jobs.looksEmpty, let job = jobs.popNewest() { return job }
        for victim in victims where !victim.worker.jobs.looksEmpty {
            if let job = victim.worker.jobs.stealOldest() {
                bump(counters.jobsStolen)
                return job
            }
        }
        return nil
    }

    private func start(_ job: Job) {
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
        fiber.assign(job)
        run(fiber, .run)
    }

    /// Ends a job that never ran.
    private func end(_ job: Job, _ error: SchedulerError) {
        job.cancel(error)
        scheduler.jobEnded()
    }

    /// Shutdown with `.cancel`: queued jobs end with `.jobCancelled`; suspended fibers are resumed with
    /// `.cancelled` so their waits throw and their frames unwind normally.
    private func cancelLocalWork() {
        while let job = jobs.popNewest() { end(job, .jobCancelled) }
        guard !local.pointee.suspended.isEmpty else { return }
        let waiting = Array(local.pointee.suspended.values)
        for waiter in waiting where waiter.claim() {
            local.pointee.suspended[ObjectIdentifier(waiter.fiber)] = nil
            run(waiter.fiber, .cancelled)
        }
    }

    // MARK: Sleeping

    /// Wakes the worker (from any thread); a no-op when it is awake, apart from one atomic exchange.
    func unpark() { parker.unpark() }

    /// Parks unless work is visible. Pairs with `FiberScheduler.wakeSleeper`: each side publishes its
    /// write (the sleeping flag, the queued job) before a sequentially consistent fence and reads the
    /// other's after it, so at least one of them sees the other.
    private func sleep() {
        isSleeping.store(true, ordering: .sequentiallyConsistent)
        scheduler.sleepers.add(1, ordering: .sequentiallyConsistent)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        defer {
            scheduler.sleepers.subtract(1, ordering: .sequentiallyConsistent)
            isSleeping.store(false, ordering: .relaxed)
        }
        let canStartJobs = pool.canProvideFiber || scheduler.config.whenExhausted == .fail
        let workVisible =
            readyCount.load(ordering: .acquiring) > 0
            || (canStartJobs && (!jobs.looksEmpty || victims.contains { !$0.worker.jobs.looksEmpty }))
            || (scheduler.isShuttingDown && scheduler.isFinished)
        if workVisible { return }
        // The timeout is a safety net only; every producer of work unparks.
        parker.park(timeoutNanoseconds: 100_000_000)
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
