import StackAllocators
import Synchronization

/// A closure waiting to run on a fiber, and the counter it decrements when it ends.
///
/// `run` never throws: the body's error is caught here, on the fiber, and handed to the counter, so no
/// Swift error ever unwinds through the context switch.
///
/// The job holds one reference to its counter, taken at creation and given back by `cancel`, by `run`
/// for a body that threw, or by the worker that settles the job (`JobSettlement`). Copies of a job (queue
/// slots, the fiber's slot) do not touch the counter's reference count: many jobs share one counter
/// across workers, and a contended reference count costs more than the rest of an empty job.
struct Job: @unchecked Sendable {
    private let counter: Unmanaged<JobCounter>
    private let body: Body

    /// The closure, as its submitter held it. An array stores a closure in another representation than a
    /// variable does (the one a generic element has), and taking an element out as a plain closure
    /// allocates a conversion context for it: one allocation per job, freed by another thread when the
    /// job ends. An element of a batch is kept as the array stores it, and called as it is.
    private enum Body {
        case closure(@Sendable () throws -> Void)
        case element(BatchElement<@Sendable () throws -> Void>)
    }

    /// A job of `counter` (which it keeps alive until it ends) running `body`.
    init(counter: JobCounter, body: @escaping @Sendable () throws -> Void) {
        self.counter = .passRetained(counter)
        self.body = .closure(body)
    }

    /// Jobs of `counter` running each of `bodies`, taken as the array stores them.
    static func batch(counter: JobCounter, _ bodies: [@Sendable () throws -> Void]) -> [Job] {
        bodies.withUnsafeBufferPointer { buffer in
            // A struct of one stored property has that property's layout, and a generic property is stored
            // as an array element is: the elements read as `BatchElement`s are copied unconverted.
            buffer.withMemoryRebound(to: BatchElement<@Sendable () throws -> Void>.self) { elements in
                elements.map { Job(counter: .passRetained(counter), body: .element($0)) }
            }
        }
    }

    private init(counter: Unmanaged<JobCounter>, body: Body) {
        self.counter = counter
        self.body = body
    }

    /// The counter the job signs off on, for comparison only.
    var counterIdentity: UnsafeMutableRawPointer { counter.toOpaque() }

    /// Runs the body. A body that threw signs off on the counter here, with its error; one that returned
    /// hands back the counter, still holding the job's reference, for its worker to sign off on
    /// (`JobSettlement`).
    consuming func run() -> Unmanaged<JobCounter>? {
        do {
            switch body {
            case .closure(let body): try body()
            case .element(let element): try element.body()
            }
            return counter
        } catch {
            counter.takeRetainedValue().decrement(failing: error)
            return nil
        }
    }

    /// Ends the job without running it.
    consuming func cancel(_ error: SchedulerError) {
        counter.takeRetainedValue().decrement(failing: error)
    }
}

/// A value stored as a generic value is (see `Job.Body`).
struct BatchElement<Value> {
    let body: Value
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
