import FiberScheduler
import Glibc
import StackTestSupport
import Testing

@Suite("A scheduler in a child made by fork")
struct ForkTests {
    @Test("In a forked child, jobs fail at once and shutdown returns; the parent's scheduler runs on", needsNoSanitizer)
    func forkedChild() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let scheduler = try FiberScheduler(config: testConfig())
            let first = try scheduler.submit { 6 * 7 }.wait()
            ensure(first == 42, "the parent's first job")
            let child = fork()
            ensure(child >= 0, "fork: errno \(errno)")
            if child == 0 {
                alarm(20)  // a wait that never ends kills the child (SIGALRM) instead of hanging the test
                _exit(forkedChildChecks(scheduler))
            }
            let status = waitForChild(child, seconds: 30)
            ensure(status == 0, "the child ended with wait status \(status) (exit code = failed check)")
            let after = try scheduler.submit { 6 * 7 }.wait()
            ensure(after == 42, "the parent's job after the fork")
            scheduler.shutdown()
        }
    }
}

/// What the forked child checks; 0 when all hold, or the number of the first that failed.
private func forkedChildChecks(_ scheduler: FiberScheduler) -> Int32 {
    func failsAsForked(_ body: () throws -> Void) -> Bool {
        do {
            try body()
            return false
        } catch let error as SchedulerError {
            return error.code == .forkedProcess
        } catch {
            return false
        }
    }
    guard failsAsForked({ _ = try scheduler.submit { 1 }.wait() }) else { return 3 }
    guard failsAsForked({ try scheduler.submit(batch: [{}, {}]).wait() }) else { return 4 }
    guard failsAsForked({ try scheduler.parallelFor(0..<100) { _ in } }) else { return 5 }
    scheduler.shutdown()
    return 0
}

/// The wait status of `child`, waiting at most `seconds`; kills it (SIGKILL) when it runs longer.
private func waitForChild(_ child: pid_t, seconds: Double) -> Int32 {
    var status: Int32 = 0
    let deadline = now() + seconds
    while waitpid(child, &status, WNOHANG) == 0 {
        guard now() < deadline else {
            kill(child, SIGKILL)
            waitpid(child, &status, 0)
            return status
        }
        usleep(10_000)
    }
    return status
}
