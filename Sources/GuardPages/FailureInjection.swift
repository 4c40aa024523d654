import Synchronization
import SystemPackage

/// Makes chosen steps of stack creation fail on purpose, so tests can prove that every error path gives
/// back what it mapped. Process-wide; costs one relaxed atomic load per hooked call while nothing is armed.
package enum FailureInjection {
    /// A step that can be made to fail.
    package enum Step: Hashable, Sendable {
        /// mmap(2), every call (reservations and fixed mappings alike).
        case map
        /// mprotect(2).
        case protect
        /// madvise(2) with this advice (`FS_MADV_GUARD_INSTALL`, `FS_MADV_POPULATE_WRITE`, ...).
        case advise(Int32)
        /// process_madvise(2) on this process with this advice.
        case adviseRanges(Int32)
        /// mincore(2).
        case residency
        /// mbind(2).
        case bind
        /// `GuardRegistry.register`.
        case register
        /// sched_getaffinity(2) of the process.
        case cpuAffinity
    }

    private struct Plan {
        var skip: Int
        var failures: Int
        let errno: Errno
    }

    private struct State {
        var plans: [Step: Plan] = [:]
        /// Ranges mmap returned while a plan was armed, for tests to check they were unmapped.
        var mapped: [Range<UInt>] = []
    }

    /// Armed plans: the fast path reads only this.
    private static let armed = Atomic<Int>(0)
    private static let state = Lock(State())

    /// Makes `step` fail with `errno` `times` times, after letting the next `skip` calls through.
    package static func fail(_ step: Step, with errno: Errno, after skip: Int = 0, times: Int = 1) {
        state.withLock { state in
            if state.plans[step] == nil { armed.add(1, ordering: .relaxed) }
            state.plans[step] = Plan(skip: skip, failures: times, errno: errno)
        }
    }

    /// Disarms every plan and returns the ranges mapped while armed.
    @discardableResult
    package static func reset() -> [Range<UInt>] {
        state.withLock { state in
            armed.subtract(state.plans.count, ordering: .relaxed)
            state.plans = [:]
            defer { state.mapped = [] }
            return state.mapped
        }
    }

    /// The errno `step` must fail with now, or nil to run it (the hook each hooked call makes first).
    @inline(__always)
    package static func injected(_ step: Step) -> Errno? {
        guard armed.load(ordering: .relaxed) != 0 else { return nil }
        return consume(step)
    }

    /// Whether a plan for `step` is armed (without consuming it).
    package static func isArmed(_ step: Step) -> Bool {
        guard armed.load(ordering: .relaxed) != 0 else { return false }
        return state.withLock { $0.plans[step] != nil }
    }

    /// Records a successful mmap while a plan is armed.
    @inline(__always)
    static func noteMapped(_ address: UInt, size: Int) {
        guard armed.load(ordering: .relaxed) != 0 else { return }
        state.withLock { $0.mapped.append(address..<(address + UInt(size))) }
    }

    private static func consume(_ step: Step) -> Errno? {
        state.withLock { state -> Errno? in
            guard var plan = state.plans[step] else { return nil }
            if plan.skip > 0 {
                plan.skip -= 1
                state.plans[step] = plan
                return nil
            }
            plan.failures -= 1
            if plan.failures > 0 {
                state.plans[step] = plan
            } else {
                state.plans[step] = nil
                armed.subtract(1, ordering: .relaxed)
            }
            return plan.errno
        }
    }
}
