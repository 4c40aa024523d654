import CStackSupport
import Glibc
import Logging
@_exported import StackAllocators
import Synchronization

/// How `shutdown` treats work that has not finished.
public enum ShutdownMode: Sendable, Hashable {
    /// Every queued job runs and every waiting job finishes (jobs may still spawn jobs meanwhile).
    case drain
    /// Queued jobs end with `SchedulerError.jobCancelled` without running; suspended fibers are resumed and
    /// their waits throw `.jobCancelled`, so their frames unwind and release what they hold.
    case cancel
}

/// Runs jobs (Swift closures) on fibers, on worker threads pinned per CPU and grouped by NUMA node, with
/// stacks from any `StackAllocator`.
///
/// ```swift
/// let scheduler = try FiberScheduler(config: FiberConfig())
/// let handle = scheduler.submit { 6 * 7 }
/// let answer = try handle.wait()          // blocks this thread; inside a job it suspends the fiber
/// scheduler.shutdown(.drain)              // joins the threads, every stack back to its allocator
/// ```
///
/// Threading rules: a job runs on one fiber from start to end, and that fiber only ever runs on its
/// worker's thread; waiting inside a job (`JobCounter.wait`, `JobHandle.wait`) suspends the fiber and the
/// worker runs other jobs. Idle workers steal queued jobs, never suspended fibers. The worker threads keep
/// the scheduler alive until `shutdown` returns: always shut a scheduler down.
///
/// A scheduler does not cross fork(2): in a child, which has none of the worker threads, jobs submitted
/// fail at once with `SchedulerError.forkedProcess` and `shutdown` returns without joining anything. Make
/// a new scheduler in the child. (A wait in the child for a job submitted before the fork never ends.) A
/// child forked inside a job must end inside it (`exec` or `_exit`): once that job returns, waits or yields
/// in the child, the child exits with status 70.
public final class FiberScheduler: @unchecked Sendable {
    /// The configuration it was made with.
    package let config: FiberConfig
    /// The topology the workers were placed on.
    package let topology: CPUTopology
    /// The allocator of each NUMA node that has workers.
    package let allocators: [Int: any StackAllocator]
    let logger: Logger
    /// Fiber ids, from 1.
    let nextFiberID = Atomic<Int>(1)
    /// Workers parked or about to park.
    let sleepers = Atomic<Int>(0)
    /// How many workers are parked or about to park now (tests wait for an idle scheduler with it).
    package var sleepingWorkers: Int { sleepers.load(ordering: .relaxed) }
    /// Whether there are no more workers than CPUs to run them: only then does an idle worker poll
    /// before it parks (`Worker.sleep`).
    let workersFitCPUs: Bool
    private var workers: [Worker] = []
    private var threads: [pthread_t] = []
    /// Jobs submitted and not yet ended (running and suspended ones included).
    private let outstanding = Atomic<Int>(0)
    private let accepting = Atomic<Bool>(true)
    /// 0 running, 1 draining, 2 cancelling.
    private let mode = Atomic<Int>(0)
    private let nextWorker = Atomic<Int>(0)
    private let joined = Lock<Bool>(false)
    /// What every fiber stack's guard must cover (nil: not checked, see `guardRequirement(_:)`).
    let guardRequirement: GuardSizing.Requirement?
    /// `fs_fork_generation()` when the scheduler was made: another value means this is a child made by fork.
    private let forkGeneration: UInt
    /// Whether forks are counted in this process (`fs_fork_watch_install`): 0, or the errno.
    private static let forkWatch = fs_fork_watch_install()

    /// Starts the workers and waits until each has its initial pool. Throws the first configuration,
    /// allocation or thread error (after stopping the workers already started).
    public init(config: FiberConfig = FiberConfig()) throws(SchedulerError) {
        try config.validate()
        self.config = config
        logger = config.logger
        if Self.forkWatch != 0 {
            logger.warning(
                "pthread_atfork failed: in a child made by fork(), jobs will wait forever instead of failing",
                metadata: ["errno": "\(Self.forkWatch)"])
        }
        forkGeneration = fs_fork_generation()
        do throws(StackError) {
            guardRequirement = try Self.guardRequirement(config)
        } catch {
            throw SchedulerError(error)
        }
        var workerCount = config.workerCount
        if let topology = config.topology {
            self.topology = topology
        } else {
            do throws(StackError) {
                topology = try CPUTopology.current(logger: config.logger)
            } catch {
                throw SchedulerError(error)
            }
            if workerCount == nil { workerCount = Self.workersAllowed(on: topology, logger: logger) }
        }
        let placements = topology.placements(workers: workerCount ?? topology.cpus.count)
        guard !placements.isEmpty else {
            throw .invalidConfiguration(field: "topology", reason: "it has no CPU to run a worker on")
        }
        workersFitCPUs = placements.count <= topology.cpus.count
        var allocators: [Int: any StackAllocator] = [:]
        do throws(StackError) {
            for node in Set(placements.map(\.node)) {
                allocators[node] = try config.allocatorFactory(node)
            }
            if config.overflowDetection { try OverflowHandler.install() }
        } catch {
            throw SchedulerError(error)
        }
        self.allocators = allocators
        workers = placements.enumerated().map { index, placement in
            Worker(index: index, placement: placement, scheduler: self, allocator: allocators[placement.node]!)
        }
        for worker in workers {
            let sameNode = workers.filter { $0.placement.node == worker.placement.node }
            let rotated = sameNode.drop { $0 !== worker }.dropFirst() + sameNode.prefix { $0 !== worker }
            worker.victims = (Array(rotated) + workers.filter { $0.placement.node != worker.placement.node })
                .map(Peer.init)
        }
        try start()
        logger.debug(
            "fiber scheduler started",
            metadata: ["workers": "\(workers.count)", "nodes": "\(allocators.keys.sorted())",
                       "initialPool": "\(config.initialPoolSize)", "stackSize": "\(config.usableSize)"])
    }

    /// One worker per CPU of `topology`, but no more than a cgroup's CPU quota lets run at once (logged
    /// at `info` when it is fewer).
    private static func workersAllowed(on topology: CPUTopology, logger: Logger) -> Int {
        let cpus = topology.cpus.count
        guard let quota = CPUQuota.current(), let workers = quota.workers(below: cpus) else { return cpus }
        logger.info(
            "\(quota.workersText), not one per CPU (\(cpus)): the CPU quota allows \(quota.cpus) CPUs; FiberConfig.workerCount sets another number",
            metadata: ["quota": "\(quota.quota)", "period": "\(quota.period)", "file": "\(quota.file)"])
        return workers
    }

    /// Refuses `config.guardSize` when it is smaller than the largest fixed frame of the loaded code, and
    /// returns the requirement each stack's actual guard is held to as fibers are made. Nil (with a
    /// warning in the log) when the config accepts smaller guards or the loaded code cannot be audited.
    private static func guardRequirement(_ config: FiberConfig) throws(StackError) -> GuardSizing.Requirement? {
        let requirement: GuardSizing.Requirement?
        do {
            requirement = try GuardSizing.requirement()
        } catch {
            config.logger.warning(
                "the stack frames of the loaded code could not be audited: guard sizes are not checked",
                metadata: ["error": "\(error)"])
            return nil
        }
        guard let requirement, let violation = requirement.violation(guardSize: config.guardSize) else {
            return config.allowGuardSmallerThanLargestFrame ? nil : requirement
        }
        guard config.allowGuardSmallerThanLargestFrame else { throw violation }
        config.logger.warning("\(violation)", metadata: ["allowGuardSmallerThanLargestFrame": "true"])
        return nil
    }

    private func start() throws(SchedulerError) {
        let started = JobCounter(workers.count)
        for worker in workers {
            do {
                // The thread holds the scheduler (and its worker) until it ends.
                threads.append(try WorkerThread.spawn { [self] in
                    worker.threadMain(started: started)
                    withExtendedLifetime(self) {}
                })
            } catch {
                started.decrement(failing: error)
                for _ in worker.index + 1..<workers.count { started.decrement() }
                break
            }
        }
        do {
            try started.wait()
        } catch {
            shutdown(.cancel)
            // Only StackErrors reach `started`: from fillInitial and from WorkerThread.spawn.
            guard let error = error as? StackError else { preconditionFailure("worker start failed: \(error)") }
            throw SchedulerError(error)
        }
    }

    // MARK: Submitting

    /// Submits one job; its value or error comes back through the handle.
    @discardableResult
    public func submit<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) -> JobHandle<Value> {
        let handle = JobHandle<Value>()
        enqueue(Job(counter: handle.counter) { handle.fulfil(try body()) })
        return handle
    }

    /// Submits one job that decrements `counter` when it ends (the counter is incremented here).
    public func submit(counter: JobCounter, _ body: @escaping @Sendable () throws -> Void) {
        counter.increment()
        enqueue(Job(counter: counter, body: body))
    }

    /// Submits jobs under one counter, which reaches zero when all have ended.
    @discardableResult
    public func submit(batch bodies: [@Sendable () throws -> Void]) -> JobCounter {
        let counter = JobCounter(bodies.count)
        enqueue(Job.batch(counter: counter, bodies))
        return counter
    }

    /// Runs `body` for every index of `range` as jobs of `chunkSize` indices (default: about four chunks
    /// per worker; values below 1 count as 1, and a size that would make more than `maximumChunks`
    /// chunks is raised to make that many), and waits for all of them: inside a job the fiber suspends,
    /// elsewhere the thread blocks. Any range works, `Int.min..<Int.max` included. Throws the first error
    /// a chunk threw.
    public func parallelFor(
        _ range: Range<Int>, chunkSize: Int? = nil, _ body: @escaping @Sendable (Int) throws -> Void
    ) throws {
        guard !range.isEmpty else { return }
        // The count as an unsigned number: `range.count` overflows past Int.max indices.
        let count = UInt(bitPattern: range.upperBound &- range.lowerBound)
        let asked = max(1, chunkSize ?? Int(count / UInt(workers.count * 4)))
        let fewest = (count - 1) / UInt(Self.maximumChunks) + 1
        let chunk = UInt(asked) < fewest ? Int(fewest) : asked
        var chunks: [@Sendable () throws -> Void] = []
        var start = range.lowerBound
        while start < range.upperBound {
            let (next, overflow) = start.addingReportingOverflow(chunk)
            let indices = start..<(overflow ? range.upperBound : min(next, range.upperBound))
            chunks.append { for index in indices { try body(index) } }
            start = indices.upperBound
        }
        try submit(batch: chunks).wait()
    }

    /// The most chunks `parallelFor` makes: each is a closure held until the batch ends.
    public static let maximumChunks = 1 << 20

    private func enqueue(_ job: Job) {
        outstanding.add(1, ordering: .sequentiallyConsistent)
        if let worker = Worker.current, worker.scheduler === self {
            // From a job: onto this worker's queue (locality); a sleeping worker may come and steal it.
            if isCancelling { return end([job], .jobCancelled) }
            worker.jobs.push(job)
            wake(worker)
            return
        }
        guard !isForkedAway else { return end([job], .forkedProcess) }
        guard accepting.load(ordering: .sequentiallyConsistent) else { return end([job], .shutDown) }
        let worker = workers[nextWorker.add(1, ordering: .relaxed).oldValue % workers.count]
        worker.jobs.push(job)
        wake(worker)
    }

    private func enqueue(_ jobs: [Job]) {
        guard !jobs.isEmpty else { return }
        outstanding.add(jobs.count, ordering: .sequentiallyConsistent)
        if let worker = Worker.current, worker.scheduler === self {
            // From a job: onto this worker's queue, like single jobs; thieves take half at a time.
            if isCancelling { return end(jobs, .jobCancelled) }
            worker.jobs.push(contentsOf: jobs[...])
            wake(worker)
            return
        }
        guard !isForkedAway else { return end(jobs, .forkedProcess) }
        guard accepting.load(ordering: .sequentiallyConsistent) else { return end(jobs, .shutDown) }
        // Spread evenly, one lock per worker.
        let first = nextWorker.add(1, ordering: .relaxed).oldValue
        let share = (jobs.count + workers.count - 1) / workers.count
        for (offset, start) in stride(from: 0, to: jobs.count, by: share).enumerated() {
            let worker = workers[(first + offset) % workers.count]
            worker.jobs.push(contentsOf: jobs[start..<min(start + share, jobs.count)])
            worker.unpark()
        }
    }

    /// Ends jobs that will never run.
    private func end(_ jobs: [Job], _ error: SchedulerError) {
        for job in jobs {
            job.cancel(error)
            jobsEnded()
        }
    }

    /// After a job was queued on `worker`: wakes it if it sleeps; if it is busy, wakes one sleeping peer
    /// (same node first) that can steal the job. An awake worker costs the producer no write to a line
    /// the worker reads. See `Worker.sleep` for the pairing.
    private func wake(_ worker: Worker) {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if worker.isSleeping.load(ordering: .sequentiallyConsistent) { return worker.unpark() }
        guard sleepers.load(ordering: .sequentiallyConsistent) > 0 else { return }
        worker.victims.first { $0.worker.isSleeping.load(ordering: .sequentiallyConsistent) }?.worker.unpark()
    }

    // MARK: Inside a job

    /// The scheduler running the calling job, or nil outside a job.
    public static var current: FiberScheduler? {
        Worker.current?.scheduler
    }

    /// The fiber running the calling job, or nil outside a job.
    public static var currentFiber: FiberInfo? {
        Worker.current?.currentFiber?.info
    }

    /// Inside a job: lets the worker run the fibers and one job that are waiting, then continues on the
    /// same fiber. Outside a job: does nothing.
    public static func yield() {
        guard let worker = Worker.current, worker.currentFiber != nil else { return }
        worker.yield()
    }

    // MARK: Shutting down

    /// Stops accepting jobs from outside, finishes or cancels the rest per `mode`, joins every worker
    /// thread, and returns once every stack is back with its allocator. Calling it again (say, `.cancel`
    /// after `.drain`) upgrades the mode and waits for the same end. Must not be called from one of this
    /// scheduler's jobs (it would join its own thread): that traps. In a child made by fork, which has no
    /// worker to join, it only stops accepting jobs.
    public func shutdown(_ mode: ShutdownMode = .drain) {
        precondition(
            Worker.current?.scheduler !== self,
            "FiberScheduler.shutdown was called from one of its own jobs; call it from outside the scheduler")
        accepting.store(false, ordering: .sequentiallyConsistent)
        guard !isForkedAway else { return }
        let requested = mode == .cancel ? 2 : 1
        var current = self.mode.load(ordering: .sequentiallyConsistent)
        while current < requested {
            let (exchanged, original) = self.mode.compareExchange(
                expected: current, desired: requested, ordering: .sequentiallyConsistent)
            if exchanged { break }
            current = original
        }
        for worker in workers { worker.unpark() }
        joined.withLock { joined in
            guard !joined else { return }
            for thread in threads { WorkerThread.join(thread) }
            joined = true
            logger.debug("fiber scheduler shut down", metadata: ["mode": "\(mode)"])
        }
    }

    /// Whether this is a child made by fork after the workers started: they are not in this process.
    var isForkedAway: Bool { fs_fork_generation() != forkGeneration }

    /// Whether `shutdown` has begun.
    var isShuttingDown: Bool { mode.load(ordering: .sequentiallyConsistent) != 0 }
    /// Whether `shutdown(.cancel)` has begun.
    var isCancelling: Bool { mode.load(ordering: .relaxed) == 2 }
    /// Whether no job is outstanding: none submitted and not yet ended (final once shutting down: then
    /// nothing new can arrive from outside).
    var isFinished: Bool { outstanding.load(ordering: .sequentiallyConsistent) == 0 }

    /// Called for jobs that ended (ran, failed to start, or were cancelled): one at a time where they
    /// fail, in bursts from the workers that ran them.
    func jobsEnded(_ count: Int = 1) {
        if outstanding.subtract(count, ordering: .sequentiallyConsistent).newValue == 0, isShuttingDown {
            for worker in workers { worker.unpark() }
        }
    }

    // MARK: Observing

    /// Number of worker threads.
    package var workerCount: Int { workers.count }

    /// The counters of every worker and its pool.
    public var stats: SchedulerStats {
        SchedulerStats(workers: workers.map(\.stats))
    }

    /// Every fiber alive now, by id.
    public var fibers: [FiberInfo] {
        workers.flatMap { $0.fiberRegistry.map(\.info) }.sorted { $0.id < $1.id }
    }
}
