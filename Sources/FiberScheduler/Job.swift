import StackAllocators
import Synchronization

/// A closure waiting to run on a fiber, and the counter it decrements when it ends.
///
/// `run` never throws: the body's error is caught here, on the fiber, and handed to the counter, so no
/// Swift error ever unwinds through the context switch.
///
/// The job holds one reference to its counter, taken at creation and given back by `run` or `cancel`,
/// exactly one of which is called for every job. Copies of a job (queue slots, the fiber's slot) do not
/// touch the counter's reference count: many jobs share one counter across workers, and a contended
/// reference count costs more than the rest of an empty job.
struct Job: @unchecked Sendable {
    private let counter: Unmanaged<JobCounter>
    private let body: @Sendable () throws -> Void

    /// A job of `counter` (which it keeps alive until it ends) running `body`.
    init(counter: JobCounter, body: @escaping @Sendable () throws -> Void) {
        self.counter = .passRetained(counter)
        self.body = body
    }

    /// Runs the body and signs off on the counter.
    consuming func run() {
        let counter = counter.takeRetainedValue()
        do {
            try body()
            counter.decrement()
        } catch {
            counter.decrement(failing: error)
        }
    }

    /// Ends the job without running it.
    consuming func cancel(_ error: SchedulerError) {
        counter.takeRetainedValue().decrement(failing: error)
    }
}

/// The result of one submitted job, to wait for from a job (the fiber suspends), a thread (it blocks)
/// or async code (it awaits).
public final class JobHandle<Value: Sendable>: Sendable {
    /// Reaches zero when the job has ended; carries the job's error.
    package let counter = JobCounter(1)
    private let result = Lock<Value?>(nil)

    init() {}

    /// Stores the job's value (called once, on the fiber, before the counter is decremented).
    func fulfil(_ value: Value) {
        result.withLock { $0 = value }
    }

    /// Whether the job has ended (returned, thrown or been cancelled).
    public var isFinished: Bool { counter.value == 0 }

    /// Waits for the job and returns its value, or throws its error: the job's own, or
    /// a `SchedulerError` (`.jobCancelled`, `.shutDown`, `.poolExhausted`, `.stackFailed`) when it never ran.
    /// Inside a job this suspends the fiber and the worker runs other jobs; elsewhere it blocks the thread.
    public func wait() throws -> Value {
        try counter.wait()
        return result.withLock { $0! }
    }

    /// The job's value, awaited through a continuation (no thread blocks).
    public var value: Value {
        get async throws {
            try await counter.wait()
            return result.withLock { $0! }
        }
    }
}
