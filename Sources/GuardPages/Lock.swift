import Glibc

/// The package's lock: a value behind a `pthread_mutex_t`, in allocations that never move. `~Copyable`
/// like `Synchronization.Mutex`, and used the same way: stored in a class, reached through `withLock`.
///
/// Used instead of `Synchronization.Mutex` because ThreadSanitizer cannot see `Mutex` on Linux: it locks
/// through the uninstrumented Swift runtime (futex syscalls), so TSan misses the ordering and reports
/// every access under it as a race. TSan intercepts `pthread_mutex_lock`, so code under this lock is
/// checked for real.
package struct Lock<State: ~Copyable>: ~Copyable, @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let state: UnsafeMutablePointer<State>

    /// A lock holding `initial`.
    package init(_ initial: consuming State) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let result = pthread_mutex_init(mutex, nil)
        precondition(result == 0, "pthread_mutex_init failed with \(result)")
        state = .allocate(capacity: 1)
        state.initialize(to: initial)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// Runs `body` with the value, holding the lock. Never switch fibers inside `body`.
    @inline(__always)
    package func withLock<Result: ~Copyable, Failure: Error>(
        _ body: (inout State) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state.pointee)
    }
}
