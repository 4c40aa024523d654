import Logging
import StackAllocators

/// One worker's fibers: made at startup, on demand, and one at a time while the worker is idle.
///
/// Used only on its worker's thread, so it needs no lock; its counters are atomics that anyone may read.
/// It never holds more than `maxPoolSize` fibers. Stacks grown while idle are prefaulted right there,
/// on the worker's thread, so their pages are zeroed on the worker's node.
final class FiberPool {
    private let config: FiberConfig
    private let allocator: any StackAllocator
    /// The owning worker, set once by it right after both exist (it owns the pool).
    unowned(unsafe) var owner: Worker?
    private let counters: WorkerCounters
    /// Mutable state in raw memory: used on one thread only, so no exclusivity bookkeeping per access.
    private let state = UnsafeMutablePointer<State>.allocate(capacity: 1)

    private struct State {
        var idle: [Fiber] = []
        var size = 0
        var growthStopped = false
    }

    init(config: FiberConfig, allocator: any StackAllocator, counters: WorkerCounters) {
        self.config = config
        self.allocator = allocator
        self.counters = counters
        state.initialize(to: State())
    }

    deinit {
        state.deinitialize(count: 1)
        state.deallocate()
    }

    private var worker: Worker { owner! }

    /// Whether `acquire` can hand out a fiber without exceeding the maximum.
    var canProvideFiber: Bool { !state.pointee.idle.isEmpty || state.pointee.size < config.maxPoolSize }

    /// Makes the initial pool (prefaulted when `prefaultInitialPool` is set).
    func fillInitial() throws(StackError) {
        let prefault = config.prefaultInitialPool ? config.prefetchPages : .none
        for _ in 0..<config.initialPoolSize {
            state.pointee.idle.append(try make(prefault: prefault, grownWhileIdle: false))
        }
    }

    /// An idle fiber, or a new one while below the maximum; nil when all `maxPoolSize` are in use.
    func acquire() throws(StackError) -> Fiber? {
        let fiber: Fiber
        if let reused = state.pointee.idle.popLast() {
            fiber = reused
        } else if state.pointee.size < config.maxPoolSize {
            fiber = try make(prefault: .none, grownWhileIdle: false)
        } else {
            return nil
        }
        bump(counters.inUse)
        let inUse = counters.inUse.load(ordering: .relaxed)
        if inUse > counters.peakInUse.load(ordering: .relaxed) { counters.peakInUse.store(inUse, ordering: .relaxed) }
        return fiber
    }

    /// Takes back a fiber whose job ended.
    func recycle(_ fiber: Fiber) {
        state.pointee.idle.append(fiber)
        bump(counters.inUse, by: -1)
    }

    /// Idle growth: one more fiber, prefaulted per `prefetchPages`, while below the target. Returns whether
    /// the pool grew. A failure is logged and stops growth for good; the pool goes on with what it has.
    func growWhileIdle() -> Bool {
        guard !state.pointee.growthStopped, state.pointee.size < config.targetPoolSize else { return false }
        do {
            state.pointee.idle.append(try make(prefault: config.prefetchPages, grownWhileIdle: true))
            bump(counters.grownWhileIdle)
            return true
        } catch {
            state.pointee.growthStopped = true
            bump(counters.growthFailures)
            config.logger.error(
                "growing the fiber pool failed; the pool stays at its current size",
                metadata: ["worker": "\(worker.index)", "size": "\(state.pointee.size)", "error": "\(error)"])
            return false
        }
    }

    /// Gives every idle fiber's stack back to its allocator. At shutdown every fiber is idle.
    func releaseAll() {
        let inUse = counters.inUse.load(ordering: .relaxed)
        if inUse != 0 {
            config.logger.error(
                "fibers still in use at shutdown; their stacks are not released",
                metadata: ["worker": "\(worker.index)", "inUse": "\(inUse)"])
        }
        let count = state.pointee.idle.count
        state.pointee.idle.removeAll()
        state.pointee.size -= count
        counters.size.store(state.pointee.size, ordering: .relaxed)
        bump(counters.released, by: count)
    }

    /// A new fiber on a new stack, prefaulted per `prefault` on this (the worker's) thread.
    private func make(prefault: PrefaultStrategy, grownWhileIdle: Bool) throws(StackError) -> Fiber {
        let stack = try allocator.allocate(config.stackRequest(node: worker.placement.node))
        // The allocator may not honour the requested guard (a custom one, or a fixed-shape one).
        if let violation = worker.scheduler.guardRequirement?.violation(guardSize: stack.descriptor.layout.sizes.guardSize) {
            throw violation
        }
        try Prefault.apply(PrefaultPolicy(prefault), to: stack.descriptor.layout, logger: config.logger)
        let fiber = Fiber(
            stack: stack, id: worker.scheduler.nextFiberID.add(1, ordering: .relaxed).oldValue, worker: worker,
            grownWhileIdle: grownWhileIdle, prefault: prefault)
        state.pointee.size += 1
        counters.size.store(state.pointee.size, ordering: .relaxed)
        bump(counters.created)
        if prefault != .none { bump(counters.prefaulted) }
        return fiber
    }
}
