@_spi(Benchmarks) import GuardPages
import CStackSupport
import Logging
import StackAllocators

/// One worker's fibers: made at startup and on demand; once the worker has been idle for a park timeout,
/// made one at a time up to the target, or given back in batches down to it (after a burst of jobs made
/// the pool grow on demand); all given back at shutdown.
///
/// Used only on its worker's thread, so it needs no lock; its counters are atomics that anyone may read.
/// It never holds more than `maxPoolSize` fibers. Stacks grown while idle are prefaulted right there,
/// on the worker's thread, so their pages are zeroed on the worker's node.
final class FiberPool {
    private let config: FiberConfig
    private let allocator: any StackAllocator
    /// Whether each new stack is checked against the live fibers' stacks (`FiberStackRanges`): for an
    /// allocator outside this package.
    private let checksOverlap: Bool
    /// The owning worker, set once by it right after both exist (it owns the pool).
    unowned(unsafe) var owner: Worker?
    private let counters: WorkerCounters
    /// Mutable state in raw memory: used on one thread only, so no exclusivity bookkeeping per access.
    private let state = UnsafeMutablePointer<State>.allocate(capacity: 1)

    private struct State {
        var idle: [Fiber] = []
        var size = 0
        var growthStopped = false
        /// Fibers freed since the heap was last trimmed.
        var freedSinceTrim = 0
        /// Whether each new stack is probed for what its descriptor claims (an allocator outside this
        /// package, until the probes are refused).
        var checksClaims = false
    }

    init(config: FiberConfig, allocator: any StackAllocator, counters: WorkerCounters) {
        self.config = config
        self.allocator = allocator
        self.checksOverlap = allocator.claimsNeedChecking
        self.counters = counters
        state.initialize(to: State(checksClaims: allocator.claimsNeedChecking))
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
        let prefault = config.prefaultInitialPool ? config.prefault : .none
        // All at once: an allocator may make them for less than one at a time (one mapping for all).
        let request = self.request, count = config.initialPoolSize
        var handed = 0
        let miscounted = { StackError.batchMiscounted(allocator: "\(type(of: self.allocator))", count: count, handed: handed) }
        try allocator.allocate(request, count: count) { (stack) throws(StackError) in
            handed += 1
            // An allocator of your own may miscount: the pool never holds more than asked for.
            guard handed <= count else { throw miscounted() }
            state.pointee.idle.append(try makeFiber(on: stack, for: request, prefault: prefault, grownWhileIdle: false))
        }
        guard handed == count else { throw miscounted() }
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

    /// Idle growth: one more fiber, prefaulted per `prefault`, while below the target. Returns whether
    /// the pool grew. A failure is logged and stops growth for good; the pool goes on with what it has.
    func growWhileIdle() -> Bool {
        guard !state.pointee.growthStopped, state.pointee.size < config.targetPoolSize else { return false }
        do {
            state.pointee.idle.append(try make(prefault: config.prefault, grownWhileIdle: true))
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

    /// Most idle fibers one shrink step gives back: the worker checks for work between steps.
    static let shrinkBatch = 256
    /// Fibers freed before the pool trims the malloc heap: their bookkeeping (some hundred bytes each)
    /// stays resident in malloc's free lists otherwise.
    static let trimAfterFreeing = 4096

    /// Idle shrinking: gives back up to `shrinkBatch` idle fibers while the pool is above its target.
    /// Returns whether the pool shrank.
    func shrinkWhileIdle() -> Bool {
        let excess = min(state.pointee.size - config.targetPoolSize, state.pointee.idle.count, Self.shrinkBatch)
        guard excess > 0 else {
            trimHeapIfWorthIt()
            return false
        }
        release(excess)
        // The idle list's storage goes too, once it is mostly empty.
        if state.pointee.idle.capacity > 1024, state.pointee.idle.count * 4 < state.pointee.idle.capacity {
            var smaller: [Fiber] = []
            smaller.reserveCapacity(state.pointee.idle.count * 2)
            smaller.append(contentsOf: state.pointee.idle)
            state.pointee.idle = smaller
        }
        return true
    }

    /// Gives every idle fiber's stack back to its allocator. At shutdown every fiber is idle.
    func releaseAll() {
        let inUse = counters.inUse.load(ordering: .relaxed)
        if inUse != 0 {
            config.logger.error(
                "fibers still in use at shutdown; their stacks are not released",
                metadata: ["worker": "\(worker.index)", "inUse": "\(inUse)"])
        }
        release(state.pointee.idle.count)
        state.pointee.idle = []
        trimHeapIfWorthIt()
    }

    /// Frees the `count` most recently idle fibers; their stacks go back to the allocator.
    private func release(_ count: Int) {
        state.pointee.idle.removeLast(count)
        state.pointee.size -= count
        counters.size.store(state.pointee.size, ordering: .relaxed)
        bump(counters.released, by: count)
        state.pointee.freedSinceTrim += count
    }

    /// Gives the heap's free pages back to the OS once many fibers were freed (a process-wide walk of
    /// malloc's free lists: milliseconds for gigabytes, so not after every few fibers).
    private func trimHeapIfWorthIt() {
        guard state.pointee.freedSinceTrim >= Self.trimAfterFreeing else { return }
        state.pointee.freedSinceTrim = 0
        if fs_heap_trim() < 0 {
            config.logger.debug("the C library cannot trim its heap; freed fiber bookkeeping stays resident")
        }
    }

    /// What this pool asks its allocator for.
    private var request: StackRequest { config.stackRequest(node: worker.placement.node, allocator: allocator) }

    /// A new fiber on a new stack, prefaulted per `prefault` on this (the worker's) thread.
    private func make(prefault: PrefaultStrategy, grownWhileIdle: Bool) throws(StackError) -> Fiber {
        let request = self.request
        return try makeFiber(on: try allocator.allocate(request), for: request, prefault: prefault, grownWhileIdle: grownWhileIdle)
    }

    /// Refuses a stack that is not what its descriptor claims (`Stack.checkClaims`); where the probes are
    /// refused (a seccomp profile), logs that once and trusts the allocator from then on.
    private func checkClaims(of stack: borrowing Stack) throws(StackError) {
        do {
            try stack.checkClaims()
        } catch {
            guard case .probeFailed = error.reason else { throw error }
            state.pointee.checksClaims = false
            config.logger.warning(
                "the stacks of this allocator cannot be checked: an overflow on a stack whose guard was never installed would go unnoticed",
                metadata: ["allocator": "\(type(of: allocator))", "error": "\(error)"])
        }
    }

    /// A new fiber on `stack`, made for `request`, prefaulted per `prefault` on this (the worker's) thread.
    private func makeFiber(
        on stack: consuming Stack, for request: StackRequest, prefault: PrefaultStrategy, grownWhileIdle: Bool
    ) throws(StackError) -> Fiber {
        let usableSize = stack.descriptor.layout.sizes.usableSize
        guard usableSize >= request.usableSize else {
            throw .stackSmallerThanRequested(
                stack: stack.descriptor.layout, requested: request.usableSize, allocator: "\(type(of: allocator))")
        }
        // The allocator may not honour the requested guard (a custom one, or a fixed-shape one). A guard
        // range that does not trap (a canary, none) is no guard against a frame that skips it.
        let guardSize = stack.guardMechanism.traps ? stack.descriptor.layout.sizes.guardSize : 0
        if let violation = worker.scheduler.guardRequirement?.violation(guardSize: guardSize) { throw violation }
        // Before the probes and the prefault write to memory a live fiber may be running on.
        let layout = stack.descriptor.layout
        if checksOverlap {
            do throws(StackError) {
                try FiberStackRanges.insert(layout, allocator: allocator)
            } catch {
                FiberStackRanges.keep(stack, logger: config.logger)
                throw error
            }
        }
        do throws(StackError) {
            if state.pointee.checksClaims { try checkClaims(of: stack) }
            try Prefault.apply(PrefaultPolicy(prefault), to: layout, logger: config.logger)
        } catch {
            if checksOverlap { FiberStackRanges.remove(layout) }
            throw error
        }
        let fiber = Fiber(
            stack: stack, id: worker.scheduler.nextFiberID.add(1, ordering: .relaxed).oldValue, worker: worker,
            grownWhileIdle: grownWhileIdle, prefault: prefault, rangeRecorded: checksOverlap)
        state.pointee.size += 1
        counters.size.store(state.pointee.size, ordering: .relaxed)
        bump(counters.created)
        if prefault != .none { bump(counters.prefaulted) }
        return fiber
    }
}
