import Glibc
import StackDiagnostics
import Synchronization
import Testing

/// The checks a watchdog reported. A class: a `Mutex` captured by the escaping `finish` closure would be
/// an inout capture, which ThreadSanitizer sees as a variable that two threads modify.
private final class Fired: Sendable {
    let checks = Mutex<[VerifyCheck]>([])
}

@Suite("verify's watchdog")
struct WatchdogTests {
    @Test("A check past its limit ends the run as a failure naming it; a disarmed one does not; nor may the gap after it last")
    func timeout() throws {
        let fired = Fired()
        let watchdog = try Watchdog { check in
            fired.checks.withLock { $0.append(check) }
            while true { sleep(60) }  // the real `finish` exits; this thread just stops here
        }
        watchdog.arm(name: "quick", allocator: "test", timeLimit: 0.3)
        watchdog.disarm(idleLimit: 60)
        usleep(600_000)
        #expect(fired.checks.withLock { $0.isEmpty })
        watchdog.arm(name: "stalls", allocator: "test", timeLimit: 0.2)
        for _ in 0..<50 where fired.checks.withLock({ $0.isEmpty }) { usleep(100_000) }
        let check = try #require(fired.checks.withLock { $0.first })
        #expect(check.name == "stalls" && check.allocator == "test" && check.status == .fail)
        #expect(check.detail.contains("timed out"))
    }

    @Test("Work between two checks is bounded too, and named after the check before it")
    func idle() throws {
        let fired = Fired()
        let watchdog = try Watchdog { check in
            fired.checks.withLock { $0.append(check) }
            while true { sleep(60) }
        }
        watchdog.arm(name: "before", allocator: "test", timeLimit: 60)
        watchdog.disarm(idleLimit: 0.2)
        for _ in 0..<50 where fired.checks.withLock({ $0.isEmpty }) { usleep(100_000) }
        let check = try #require(fired.checks.withLock { $0.first })
        #expect(check.name == "after before" && check.status == .fail)
    }
}
