import Glibc

/// A value behind a `pthread_mutex_t`, both in one allocation that never moves. `~Copyable` like
/// `Synchronization.Mutex`, and used the same way: stored in a class, reached through `withLock`.
///
/// Used instead of `Synchronization.Mutex` because ThreadSanitizer cannot see `Mutex` on Linux: it locks
/// through the uninstrumented Swift runtime (futex syscalls), so TSan misses the ordering and reports
/// every access under it as a race. TSan intercepts `pthread_mutex_lock`, so code under this lock is
/// checked for real.
struct Lock<State>: ~Copyable, @unchecked Sendable {
    private struct Storage {
        var mutex: pthread_mutex_t
        var state: State
    }

    private let storage: UnsafeMutablePointer<Storage>

    /// A lock holding `initial`.
    init(_ initial: State) {
        storage = .allocate(capacity: 1)
        storage.initialize(to: Storage(mutex: pthread_mutex_t(), state: initial))
        let result = pthread_mutex_init(storage.pointer(to: \.mutex)!, nil)
        precondition(result == 0, "pthread_mutex_init failed with \(result)")
    }

    deinit {
        pthread_mutex_destroy(storage.pointer(to: \.mutex)!)
        storage.deinitialize(count: 1)
        storage.deallocate()
    }

    /// Runs `body` with the value, holding the lock. Never switch fibers inside `body`.
    @inline(__always)
    func withLock<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
        let mutex = storage.pointer(to: \.mutex)!
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&storage.pointee.state)
    }
}
