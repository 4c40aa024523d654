import StackAllocators

/// A failure of the scheduler, or of a job it could not run: what failed and the fix.
///
/// Compare `code`, never the message; new codes can be added without breaking code that compares them.
/// Where an allocator (or the machine) failed, `underlying` holds its `StackError`.
public struct SchedulerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure an error is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A `FiberConfig` field holds a value the scheduler cannot use.
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// A job needed a fiber and its worker's pool was at `FiberConfig.maxPoolSize`, all in use.
        public static let poolExhausted = Code("poolExhausted")
        /// The scheduler was shut down with `.cancel` before the job finished (or while it waited).
        public static let jobCancelled = Code("jobCancelled")
        /// The job was submitted after `shutdown` began.
        public static let shutDown = Code("shutDown")
        /// The job was submitted in a child process made by fork(2) after the scheduler started: the child
        /// has none of its worker threads.
        public static let forkedProcess = Code("forkedProcess")
        /// A worker thread could not be created.
        public static let threadCreationFailed = Code("threadCreationFailed")
        /// The allocator, the topology or the overflow handler failed: see `underlying`.
        public static let stackFailed = Code("stackFailed")
    }

    /// What kind of failure this is.
    public let code: Code
    /// What failed and why.
    public let message: String
    /// What to change; empty when there is nothing to do.
    public let fix: String
    /// The allocator's or the machine's error behind this one, if any.
    public let underlying: StackError?

    public var description: String { fix.isEmpty ? message : "\(message); \(fix)" }

    private init(_ code: Code, _ message: String, fix: String, underlying: StackError? = nil) {
        self.code = code
        self.message = message
        self.fix = fix
        self.underlying = underlying
    }

    /// A stack error met while starting or running: a thread that could not be created keeps its code, a
    /// usage error (a guard smaller than the largest frame) is a configuration error.
    package init(_ error: StackError) {
        let code: Code =
            switch error.reason {
            case .threadCreationFailed, .threadStackOverLimit: .threadCreationFailed
            default: error.isUsage ? .invalidConfiguration : .stackFailed
            }
        self.init(code, error.message, fix: error.fix, underlying: error)
    }

    package static func invalidConfiguration(field: String, reason: String) -> SchedulerError {
        SchedulerError(.invalidConfiguration, "invalid FiberConfig.\(field): \(reason)", fix: "")
    }

    package static func poolExhausted(worker: Int, maxPoolSize: Int) -> SchedulerError {
        SchedulerError(
            .poolExhausted, "worker \(worker) has all \(maxPoolSize) fibers of its pool in use",
            fix: "raise FiberConfig.maxPoolSize, or set FiberConfig.whenExhausted = .wait to queue jobs until a fiber is free")
    }

    package static let jobCancelled = SchedulerError(
        .jobCancelled, "the job was cancelled by shutdown(.cancel)",
        fix: "use shutdown(.drain) to let queued and waiting jobs finish")

    package static let forkedProcess = SchedulerError(
        .forkedProcess,
        "the job was submitted in a child process made by fork(), which has none of the scheduler's worker threads",
        fix: "make a new FiberScheduler in the child, or fork before starting the scheduler")

    package static let shutDown = SchedulerError(
        .shutDown, "the job was submitted after the scheduler began shutting down",
        fix: "submit jobs before calling shutdown")
}
