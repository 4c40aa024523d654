import StackAllocators
import Synchronization

/// One fiber, as plain data: who it is, where it runs, and the stack it runs on.
public struct FiberInfo: Sendable, Hashable {
    /// Unique within the scheduler, from 1.
    public let id: Int
    /// The worker that owns the fiber (it never runs anywhere else).
    public let worker: Int
    /// The worker's NUMA node.
    public let node: Int
    /// The fiber's stack.
    public let stack: StackDescriptor
    /// The name an overflow diagnostic uses: fiber id and worker.
    public let label: String
    /// Whether an idle worker made it (growth toward `targetPoolSize`) rather than startup or a job.
    package let grownWhileIdle: Bool
    /// How its stack was prefaulted when the fiber was made.
    package let prefault: PrefaultStrategy
}

/// One worker's fiber pool, counted.
public struct FiberPoolStats: Sendable, Hashable, Codable {
    /// Fibers alive now (idle, running or suspended).
    public var size = 0
    /// Fibers running a job or suspended in one.
    public var inUse = 0
    /// Most fibers in use at once.
    public var peakInUse = 0
    /// Fibers made since startup (startup, on demand, and idle growth).
    public var created = 0
    /// Fibers made by an idle worker growing its pool toward the target.
    public var grownWhileIdle = 0
    /// Fibers whose stack was prefaulted when made.
    public var prefaulted = 0
    /// Idle growth attempts that failed (allocation or prefault); growth stops after the first.
    public var growthFailures = 0
    /// Fibers whose stack went back to the allocator.
    public var released = 0

    /// All zero.
    package init() {}

    /// Field-by-field sum, for totals over workers.
    package static func + (lhs: FiberPoolStats, rhs: FiberPoolStats) -> FiberPoolStats {
        var sum = FiberPoolStats()
        sum.size = lhs.size + rhs.size
        sum.inUse = lhs.inUse + rhs.inUse
        sum.peakInUse = lhs.peakInUse + rhs.peakInUse
        sum.created = lhs.created + rhs.created
        sum.grownWhileIdle = lhs.grownWhileIdle + rhs.grownWhileIdle
        sum.prefaulted = lhs.prefaulted + rhs.prefaulted
        sum.growthFailures = lhs.growthFailures + rhs.growthFailures
        sum.released = lhs.released + rhs.released
        return sum
    }
}

/// One worker's counters.
public struct WorkerStats: Sendable, Hashable, Codable {
    /// Worker index, from 0.
    public let index: Int
    /// Its CPU and NUMA node.
    package let placement: CPUTopology.Placement
    /// The CPU it is placed on.
    public var cpu: Int { placement.cpu }
    /// The NUMA node of that CPU.
    public var node: Int { placement.node }
    /// Whether pinning to `cpu` succeeded (false when pinning is off or failed).
    public let pinned: Bool
    /// Its fiber pool.
    public let pool: FiberPoolStats
    /// Jobs this worker ran to completion.
    public let jobsRun: Int
    /// Jobs it took from another worker's queue.
    public let jobsStolen: Int
    /// Times one of its fibers suspended in a wait.
    public let suspensions: Int
}

/// A snapshot of the scheduler's counters. Read field by field while workers run, so a snapshot
/// taken under load can be off by the operations in flight.
public struct SchedulerStats: Sendable, Hashable, Codable {
    /// Per worker, by index.
    public let workers: [WorkerStats]
    /// Pools summed over workers.
    public var pool: FiberPoolStats { workers.map(\.pool).reduce(FiberPoolStats(), +) }
    /// Jobs run, summed over workers.
    public var jobsRun: Int { workers.map(\.jobsRun).reduce(0, +) }
}

/// Counters written by one worker thread only and read by anyone: single-writer, so updates are a
/// relaxed load and store rather than a read-modify-write.
final class WorkerCounters: Sendable {
    let size = Atomic<Int>(0)
    let inUse = Atomic<Int>(0)
    let peakInUse = Atomic<Int>(0)
    let created = Atomic<Int>(0)
    let grownWhileIdle = Atomic<Int>(0)
    let prefaulted = Atomic<Int>(0)
    let growthFailures = Atomic<Int>(0)
    let released = Atomic<Int>(0)
    let jobsRun = Atomic<Int>(0)
    let jobsStolen = Atomic<Int>(0)
    let suspensions = Atomic<Int>(0)
    let pinned = Atomic<Bool>(false)

    var pool: FiberPoolStats {
        var stats = FiberPoolStats()
        stats.size = size.load(ordering: .relaxed)
        stats.inUse = inUse.load(ordering: .relaxed)
        stats.peakInUse = peakInUse.load(ordering: .relaxed)
        stats.created = created.load(ordering: .relaxed)
        stats.grownWhileIdle = grownWhileIdle.load(ordering: .relaxed)
        stats.prefaulted = prefaulted.load(ordering: .relaxed)
        stats.growthFailures = growthFailures.load(ordering: .relaxed)
        stats.released = released.load(ordering: .relaxed)
        return stats
    }
}

/// Adds `delta` to a counter that only the calling thread writes (a relaxed load and store, no RMW).
@inline(__always)
func bump(_ counter: borrowing Atomic<Int>, by delta: Int = 1) {
    counter.store(counter.load(ordering: .relaxed) + delta, ordering: .relaxed)
}
