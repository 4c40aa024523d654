import Logging
import StackAllocators

/// What a job does when its worker has no free fiber and the pool is at `FiberConfig.maxPoolSize`.
public enum ExhaustionPolicy: String, Sendable, Hashable, Codable {
    /// The job stays queued (idle workers may steal it) until one of the worker's fibers is free.
    case wait
    /// The job fails at once with `SchedulerError.poolExhausted`, delivered to whoever waits for it.
    case fail
}

/// Everything a `FiberScheduler` is made from: stacks, pools, workers, the allocator, the logger.
///
/// Every setting takes effect: startup makes `initialPoolSize` fibers per worker,
/// idle workers grow their pool one fiber at a time toward `targetPoolSize` (prefaulting each grown stack
/// per `prefault`, on the worker's own thread and so on its own NUMA node) and give fibers made on
/// demand back down to it, and no pool ever holds more than `maxPoolSize` fibers.
public struct FiberConfig: Sendable {
    /// Usable bytes per fiber stack. Default 512 KiB. An allocator with one shape (a slab, a pool:
    /// `StackAllocator.fixedSizes`) decides the sizes instead, along with `guardSize`.
    public var usableSize: Int = StackRequest.defaultUsableSize
    /// Guard bytes below each stack (0: none). Default 64 KiB: Swift emits no stack probes, so a smaller
    /// guard can be jumped by one large frame (docs/sizing-stacks.md).
    public var guardSize: Int = StackRequest.defaultGuardSize
    /// Fibers each worker makes at startup. Default 16.
    public var initialPoolSize = 16
    /// Size each worker's pool grows toward, and shrinks back to, once the worker has been idle for a
    /// while (100 ms). Default 128.
    public var targetPoolSize = 128
    /// Most fibers a worker's pool ever holds (idle + running + suspended). Default 1024.
    public var maxPoolSize = 1024
    /// How stacks grown while idle are made resident: `.none`, `.touch` (write each page, top down) or
    /// `.populate` (`MADV_POPULATE_WRITE`). Runs on the worker's thread, so the kernel zeroes the pages on
    /// the worker's node. Default `.none`.
    public var prefault: PrefaultStrategy = .none
    /// Whether the initial pool is prefaulted with `prefault` as well (at startup, on each worker's
    /// thread). Default false: startup stays cheap and idle time does the work.
    public var prefaultInitialPool = false
    /// Whether each worker's stacks are bound (mbind, `NUMAPlacement.bind`) to the worker's NUMA node
    /// before any page exists, so they stay there whoever touches them and `PlacementReport` can prove it.
    /// Default false: stacks follow first touch, which prefault on the worker's thread already makes local.
    /// A worker on a node without memory then fails at startup with `.unsupported`.
    public var bindStacksToNode = false
    /// Worker threads; nil: one per CPU this process may run on, but no more than its cgroup's CPU quota
    /// (`docker --cpus`, `cpu.max`) lets run at once, rounded up. Default nil.
    public var workerCount: Int?
    /// Whether each worker is pinned to its CPU (`sched_setaffinity`). Failures are logged, not fatal.
    /// Default true.
    public var pinWorkers = true
    /// Install `OverflowHandler` and give every worker an alternate signal stack, so a fiber that
    /// overflows into its guard dies with a line naming the fiber and its worker (docs/overflow-detection.md).
    /// Default true.
    public var overflowDetection = true
    /// Whether a `guardSize` smaller than the largest fixed frame of the code loaded in the process is
    /// accepted (with a warning in the log) instead of refused at startup. Default false: such a frame
    /// can jump the guard without touching it and silently write into the stack below (docs/sizing-stacks.md).
    public var allowGuardSmallerThanLargestFrame = false
    /// What a job does when its worker's pool is exhausted. Default `.wait`.
    public var whenExhausted: ExhaustionPolicy = .wait
    /// Makes the allocator for one NUMA node; called once per node that has workers, at startup.
    /// Default: an `MmapStackAllocator` with automatic guards per node.
    public var allocatorFactory: @Sendable (_ node: Int) throws(StackError) -> any StackAllocator = {
        _ throws(StackError) in try MmapStackAllocator()
    }
    /// Where workers may run; nil: `CPUTopology.current()` at startup. Default nil.
    package var topology: CPUTopology?
    /// Where the scheduler logs (pool growth failures, pinning failures, lifecycle).
    public var logger = Logger(label: "fiberstacks.scheduler")

    /// The defaults; every field can be changed afterwards.
    public init() {}

    /// The defaults with `allocator` serving every node.
    public init(allocator: any StackAllocator) {
        allocatorFactory = { _ in allocator }
    }

    /// Checks the fields against each other; the first problem is thrown.
    func validate() throws(SchedulerError) {
        do throws(StackError) {
            _ = try StackSizes(usableSize: usableSize, guardSize: guardSize)
        } catch {
            let field = if case .invalidGuard = error.reason { "guardSize" } else { "usableSize" }
            throw .invalidConfiguration(field: field, reason: error.message)
        }
        guard maxPoolSize >= 1 else { throw .invalidConfiguration(field: "maxPoolSize", reason: "must be at least 1") }
        guard initialPoolSize >= 0, initialPoolSize <= targetPoolSize else {
            throw .invalidConfiguration(
                field: "initialPoolSize", reason: "\(initialPoolSize) must be between 0 and targetPoolSize (\(targetPoolSize))")
        }
        guard targetPoolSize <= maxPoolSize else {
            throw .invalidConfiguration(
                field: "targetPoolSize", reason: "\(targetPoolSize) must not exceed maxPoolSize (\(maxPoolSize))")
        }
        if let workerCount, workerCount < 1 || workerCount > 4096 {
            throw .invalidConfiguration(field: "workerCount", reason: "\(workerCount) must be between 1 and 4096")
        }
    }

    /// The stack request for one fiber of a worker on `node`: an allocator with one shape (`fixedSizes`)
    /// gets exactly its sizes. Prefault is applied by the pool itself, on the worker's thread.
    func stackRequest(node: Int, allocator: any StackAllocator) -> StackRequest {
        let sizes = allocator.fixedSizes
        return StackRequest(
            usableSize: sizes?.usableSize ?? usableSize, guardSize: sizes?.guardSize ?? guardSize,
            placement: bindStacksToNode ? .bind(node) : nil)
    }
}
