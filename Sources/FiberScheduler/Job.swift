import StackAllocators
import Synchronization

/// A closure waiting to run on a fiber, and the counter it decrements when it ends.
///
/// `run` never throws: the body's error is caught here, on the fiber, and handed to the counter, so no
/// Swift error ever unwinds through the context switch.
struct Job: Sendable {
    /// The counter decremented when the job ends (carrying its error, if it threw or was cancelled).
    let counter: JobCounter
    /// The work.
    let body: @Sendable () throws -> Void

    /// Runs the body and signs off on the counter.
    func run() {
        do {
            try body()
            counter.decrement()
        } catch {
            counter.decrement(failing: error)
        }
    }

    /// Ends the job without running it.
    func cancel(_ error: StackError) {
        counter.decrement(failing: error)
    }
}

/// The result of one submitted job, to wait for from a job (the fiber suspends), a thread (it blocks)
/// or async code (it awaits).
public final class JobHandle<Value: Sendable>: Sendable {
    /// Reaches zero when the job has ended; carries the job's error.
    public let counter = JobCounter(1)
    private let result = Lock<Value?>(nil)

    init() {}

    /// Stores the job's value (called once, on the fiber, before the counter is decremented).
    func fulfil(_ value: Value) {
        result.withLock { $0 = value }
    }

    /// Whether the job has ended (returned, thrown or been cancelled).
    public var isFinished: Bool { counter.value == 0 }

    /// Waits for the job and returns its value, or throws its error: the job's own, or
    /// `StackError.jobCancelled` / `.schedulerShutDown` / `.fiberPoolExhausted` when it never ran.
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
