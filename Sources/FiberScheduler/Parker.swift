import Glibc
import Synchronization

/// Blocks one thread until another unparks it (the model is Rust's `std::thread::park`).
///
/// An `unpark` that comes before the `park` is remembered: the next `park` returns at once. Parking can
/// also end spuriously or on timeout, so callers re-check their condition in a loop. The uncontended
/// `unpark` is one atomic exchange; only a parked thread costs a mutex and a condition signal.
final class Parker: @unchecked Sendable {
    private static let empty = 0
    private static let notified = 1
    private static let parked = -1

    private let state = Atomic<Int>(Parker.empty)
    // pthread objects must not move: they live in their own allocations.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Blocks until `unpark`, a spurious wake-up, or `timeoutNanoseconds` (nil: no timeout) have passed.
    /// Returns false when the timeout ended it with no `unpark`.
    @discardableResult
    func park(timeoutNanoseconds: Int? = nil) -> Bool {
        if state.compareExchange(expected: Self.notified, desired: Self.empty, ordering: .acquiring).exchanged {
            return true
        }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard state.compareExchange(expected: Self.empty, desired: Self.parked, ordering: .acquiring).exchanged else {
            // Notified between the first check and the lock.
            state.store(Self.empty, ordering: .relaxed)
            return true
        }
        let deadline = timeoutNanoseconds.map(Self.deadline(after:))
        while true {
            if var deadline {
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT {
                    // Either still parked (timeout) or notified just now: both end the park.
                    return state.exchange(Self.empty, ordering: .acquiring) == Self.notified
                }
            } else {
                pthread_cond_wait(condition, mutex)
            }
            if state.compareExchange(expected: Self.notified, desired: Self.empty, ordering: .acquiring).exchanged {
                return true
            }
        }
    }

    /// Wakes the parked thread, or makes its next `park` return at once.
    func unpark() {
        guard state.exchange(Self.notified, ordering: .releasing) == Self.parked else { return }
        // Taking the lock orders this signal after the parker's wait began.
        pthread_mutex_lock(mutex)
        pthread_mutex_unlock(mutex)
        pthread_cond_signal(condition)
    }

    private static func deadline(after nanoseconds: Int) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let total = Int(now.tv_nsec) + nanoseconds
        return timespec(tv_sec: now.tv_sec + total / 1_000_000_000, tv_nsec: total % 1_000_000_000)
    }
}
