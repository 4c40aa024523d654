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

    /// What a job does in the child once fork returned there.
    enum ChildPath: String, CaseIterable, Codable, Sendable, CustomTestStringConvertible {
        /// The job returns (fork's 0).
        case returns
        /// The job waits for a job submitted before the fork, which the child never runs.
        case waits
        var testDescription: String { rawValue }
    }

    @Test(
        "A job that forks and goes back to its worker in the child (returning or waiting) ends the child with status 70 and a message naming exec and _exit; the parent's scheduler runs on",
        needsNoSanitizer, arguments: ChildPath.allCases)
    func jobForks(_ path: ChildPath) async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [path] in
            let scheduler = try FiberScheduler(config: testConfig())
            let slow = scheduler.submit { usleep(500_000) }
            // In the parent the job returns the child's pid; in the child it gets fork's 0 and goes on.
            let child = try scheduler.submit { () -> pid_t in
                let pid = fork()
                if pid == 0, path == .waits { try? slow.wait() }
                return pid
            }.wait()
            ensure(child > 0, "fork: errno \(errno)")
            let status = waitForChild(child, seconds: 20)
            ensure(status & 0x7f == 0 && (status >> 8) & 0xff == 70, "the child ended with wait status \(status), not exit 70")
            try slow.wait()
            let after = try scheduler.submit { 6 * 7 }.wait()
            ensure(after == 42, "the parent's job after the fork")
            scheduler.shutdown()
        }
        let text = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(text.contains("called fork()") && text.contains("exec") && text.contains("_exit"), "\(text)")
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
