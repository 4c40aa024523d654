import Glibc
import StackAllocators
import Synchronization

/// Bounds the time of in-process checks for `verify`, and of the work between them: a check still
/// running past its limit ends the run. The watchdog records it as a failure naming the check, prints what was found so far (`finish`),
/// and exits 1. A hung check cannot be stopped from outside its thread, so the process ends instead.
package final class Watchdog: Sendable {
    private struct Running {
        package var name = ""
        package var allocator = ""
        package var deadline = Double.infinity
        package var timeLimit = 0.0
    }

    private let running = Mutex(Running())
    private let finish: @Sendable (VerifyCheck) -> Never

    /// `finish` receives the failed row of the check that timed out, prints the report and exits.
    package init(finish: @escaping @Sendable (VerifyCheck) -> Never) throws(WatchdogError) {
        self.finish = finish
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            Unmanaged<Watchdog>.fromOpaque(context!).takeRetainedValue().watch()
        }, context)
        guard created == 0 else {
            Unmanaged<Watchdog>.fromOpaque(context).release()
            throw WatchdogError(errno: created)
        }
        pthread_detach(thread)
    }

    /// A check starts: it must end within `timeLimit` seconds.
    package func arm(name: String, allocator: String, timeLimit: Double) {
        running.withLock { $0 = Running(name: name, allocator: allocator, deadline: monotonicSeconds() + timeLimit, timeLimit: timeLimit) }
    }

    /// The running check ended. Work between checks (allocating the stack the next rows probe) is
    /// bounded too: the next check must start within `idleLimit` seconds.
    package func disarm(idleLimit: Double = VerifyReport.defaultTimeLimit) {
        running.withLock {
            $0 = Running(name: "after " + $0.name, allocator: $0.allocator, deadline: monotonicSeconds() + idleLimit, timeLimit: idleLimit)
        }
    }

    private func watch() -> Never {
        while true {
            usleep(100_000)
            let expired = running.withLock { $0.deadline < monotonicSeconds() ? $0 : nil }
            if let expired {
                finish(VerifyCheck(
                    name: expired.name, allocator: expired.allocator, status: .fail,
                    detail: "timed out: still running after its \(Int(expired.timeLimit)) s limit; verify stopped here",
                    capability: nil, seconds: expired.timeLimit))
            }
        }
    }
}

/// The watchdog thread could not start.
package struct WatchdogError: Error, CustomStringConvertible {
    package let errno: Int32
    /// For EAGAIN, the task limit reached (`TaskLimit.explanation()`, read when it failed).
    let taskLimit: String?

    init(errno: Int32) {
        self.errno = errno
        taskLimit = errno == EAGAIN ? TaskLimit.explanation() : nil
    }

    package var description: String {
        "cannot start the verify watchdog thread: pthread_create: errno \(errno)" + (taskLimit.map { "; \($0)" } ?? "")
    }
}
