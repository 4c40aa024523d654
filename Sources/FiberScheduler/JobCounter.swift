import StackAllocators
import Synchronization

/// A count of jobs still to finish, and everyone waiting for it to reach zero.
///
/// Jobs submitted with a counter decrement it when they end. Waiting works from anywhere:
/// - inside a job, `wait()` suspends the fiber; its worker runs other jobs, and the fiber resumes on
///   the same worker (never another) once the count is zero;
/// - on any other thread, `wait()` blocks the thread;
/// - in async code, `await wait()` suspends the task through a continuation.
///
/// A counter that reaches zero wakes every waiter; it can be incremented again and reused. The first
/// error a job ended with (its own, or a cancellation) is kept and thrown by every `wait()` after it.
public final class JobCounter: Sendable {
    private let count: Atomic<Int>
    private let state = Lock(State())
    /// Set (under the lock) once `firstError` is: a million waiters woken at once check it without
    /// taking the lock in turn.
    private let failed = Atomic<Bool>(false)

    private struct State {
        /// Threads and tasks waiting.
        var waiters: [Waiter] = []
        /// Fibers waiting, by worker.
        var fibers: [WorkerWaits] = []
        var firstError: (any Error)?
    }

    /// The waits of one worker's fibers, handed to it in one piece.
    private struct WorkerWaits {
        let worker: Worker
        var waits: [FiberWait]
    }

    /// A counter at `count` (not negative).
    public init(_ count: Int = 0) {
        precondition(count >= 0, "a JobCounter starts at zero or more, not \(count)")
        self.count = Atomic(count)
    }

    /// The count now. A worker subtracts the jobs of one counter that end in a row together, at most 64 at
    /// a time and before it runs anything else, so while jobs run this can be higher than the jobs left.
    public var value: Int { count.load(ordering: .acquiring) }

    /// The first error a job of this counter ended with, if any.
    public var error: (any Error)? {
        guard failed.load(ordering: .acquiring) else { return nil }
        return state.withLock { $0.firstError }
    }

    /// Adds `amount` (not negative) jobs to wait for.
    public func increment(by amount: Int = 1) {
        precondition(amount >= 0, "JobCounter.increment(by:) takes a count of jobs, not \(amount)")
        count.add(amount, ordering: .relaxed)
    }

    /// One job ended well. Decrementing below zero is a programming error and traps.
    public func decrement() {
        decrement(by: 1)
    }

    /// `amount` jobs ended well (a worker settles the jobs of one counter it ran in a row at once).
    func decrement(by amount: Int) {
        let remaining = count.subtract(amount, ordering: .acquiringAndReleasing).newValue
        precondition(remaining >= 0, "JobCounter decremented below zero")
        if remaining == 0 { wakeAll() }
    }

    /// One job ended with `error`; the first error is kept for the waiters.
    public func decrement(failing error: any Error) {
        state.withLock { state in
            if state.firstError == nil {
                state.firstError = error
                failed.store(true, ordering: .releasing)
            }
        }
        decrement()
    }

    /// Waits until the count is zero, then throws the first job error if there was one.
    /// Inside a job the fiber suspends (and `SchedulerError.jobCancelled` is thrown if the scheduler is shut
    /// down with `.cancel` meanwhile); on any other thread the thread blocks.
    public func wait() throws {
        if let worker = Worker.current, let fiber = worker.currentFiber {
            try suspend(fiber, on: worker)
        } else {
            let waiter = ThreadWaiter()
            if register(.thread(waiter)) { waiter.wait() }
        }
        if let error { throw error }
    }

    /// Awaits the count reaching zero without blocking a thread, then throws the first job error.
    public func wait() async throws {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            if !register(.task(continuation)) { continuation.resume() }
        }
        if let error { throw error }
    }

    private func suspend(_ fiber: Fiber, on worker: Worker) throws(SchedulerError) {
        guard count.load(ordering: .acquiring) > 0 else { return }
        if worker.scheduler.isCancelling { throw .jobCancelled }
        let wait = fiber.beginWait()
        let registered = state.withLock { state in
            guard count.load(ordering: .acquiring) > 0 else { return false }
            if let index = state.fibers.firstIndex(where: { $0.worker === worker }) {
                state.fibers[index].waits.append(wait)
            } else {
                state.fibers.append(WorkerWaits(worker: worker, waits: [wait]))
            }
            return true
        }
        guard registered else { return }
        if worker.suspend(fiber) == .cancelled {
            // Out of the list, which holds the fiber. If the counter handed the wait to the worker
            // meanwhile, the worker drops it there: its claim fails.
            state.withLock { state in
                if let index = state.fibers.firstIndex(where: { $0.worker === worker }) {
                    state.fibers[index].waits.removeAll { $0.fiber === fiber }
                }
            }
            throw .jobCancelled
        }
    }

    /// Adds `waiter` unless the count is already zero; returns whether it was added.
    private func register(_ waiter: Waiter) -> Bool {
        state.withLock { state in
            guard count.load(ordering: .acquiring) > 0 else { return false }
            state.waiters.append(waiter)
            return true
        }
    }

    private func wakeAll() {
        let (waiters, fibers) = state.withLock { state in
            defer {
                state.waiters = []
                state.fibers = []
            }
            return (state.waiters, state.fibers)
        }
        for waiter in waiters {
            switch waiter {
            case .thread(let waiter): waiter.wake()
            case .task(let continuation): continuation.resume()
            }
        }
        // Each worker gets its fibers' waits in one piece (one lock, one wake-up) and claims them itself:
        // this thread touches no fiber, and a million waits are claimed by every worker at once.
        for var entry in fibers { entry.worker.makeReady(&entry.waits) }
    }
}

/// A thread or a task waiting for a counter.
private enum Waiter: Sendable {
    case thread(ThreadWaiter)
    case task(CheckedContinuation<Void, Never>)
}

/// A thread blocked in `JobCounter.wait`.
private final class ThreadWaiter: Sendable {
    private let parker = Parker()
    private let woken = Atomic<Bool>(false)

    /// Parks at once: a thread polling here would take a CPU from the workers it waits for.
    func wait() {
        while !woken.load(ordering: .acquiring) { parker.park() }
    }

    func wake() {
        woken.store(true, ordering: .releasing)
        parker.unpark()
    }
}
