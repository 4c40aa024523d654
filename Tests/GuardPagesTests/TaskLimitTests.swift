@testable import GuardPages
import Glibc
import OverflowDetection
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// fork, posix_spawn and pthread_create all fail with EAGAIN at any of three limits; the error names the
/// one reached, with its numbers, so the fix is the right one.
@Suite("Task limits", .disabled(if: Sanitizer.loaded == .address,
                                 "LeakSanitizer checks for leaks at exit from a task it creates, which the limits refuse (exit 1)"))
struct TaskLimitTests {
    /// Runs an empty body on a thread of its own, on a stack mapped here: the thread creation the limits refuse.
    static func startThread() throws(StackError) {
        let sizes = try StackSizes(usableSize: 256 << 10, guardSize: 0)
        let base = mmap(nil, sizes.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        defer { munmap(base, sizes.total) }
        try StackThread.run(on: try StackLayout(base: UInt(bitPattern: base), sizes: sizes), name: "limited") {}
    }

    @Test("A thread or a child process the cgroup's pids.max refuses names the file and its numbers",
          .enabled(if: writableCgroup(controller: "pids") != nil,
                   "needs a pids cgroup this user may make a child in (root, cgroup v1 pids or v2 with +pids in cgroup.subtree_control)"))
    func pidsMax() async throws {
        let hierarchy = try #require(writableCgroup(controller: "pids"))
        let cgroup = try makeChildCgroup(of: hierarchy, "pids", settings: [("pids.max", "1")])
        // The child has exited by then, so the cgroup is empty and can go.
        defer { _ = rmdir(cgroup) }
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [cgroup = cgroup as String] in
            // The limit binds new tasks only: this process, threads and all, may join at any count.
            joinCgroup(cgroup)
            let named = { (text: String) in
                text.contains("the cgroup's pids.max is reached (") && text.contains(" of 1 tasks): raise \(cgroup)/pids.max")
            }
            do throws(StackError) {
                try TaskLimitTests.startThread()
                fail("a thread started past pids.max")
            } catch {
                ensure(error.errno == .resourceTemporarilyUnavailable && named(error.description), "\(error)")
            }
            do {
                _ = try ChildProcess.run("/bin/true", [], timeLimit: 5)
                fail("a child was spawned past pids.max")
            } catch let failure as ChildProcess.Failure {
                ensure(failure.errno == .resourceTemporarilyUnavailable && named(failure.description), "\(failure)")
            }
        }
    }

    @Test("A thread that ulimit -u refuses names it, the user's tasks and the limit", .enabled(if: geteuid() == 0, "needs root to act as another user"))
    func userLimit() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            var limit = rlimit(rlim_cur: 1, rlim_max: 1)
            ensure(setrlimit(__rlimit_resource_t(__RLIMIT_NPROC.rawValue), &limit) == 0, "setrlimit: errno \(errno)")
            ensure(setgroups(0, nil) == 0 && setgid(unprivilegedUser) == 0 && setuid(unprivilegedUser) == 0, "setuid: errno \(errno)")
            do throws(StackError) {
                try TaskLimitTests.startThread()
                fail("a thread started past ulimit -u 1")
            } catch {
                ensure(error.errno == .resourceTemporarilyUnavailable && error.description.contains("ulimit -u is reached (")
                    && error.description.contains("processes and threads of uid \(unprivilegedUser), limit 1)"), "\(error)")
            }
        }
    }

    @Test("kernel.threads-max is named when the machine's tasks reach it, and not otherwise")
    func threadsMax() {
        let reached = TaskLimit.threadsMaxReached(limit: 345, loadavg: "0.10 0.20 0.30 2/345 678\n")
        #expect(reached?.contains("kernel.threads-max is reached (345 of 345 threads") == true, "\(String(describing: reached))")
        #expect(reached?.contains("sysctl -w kernel.threads-max=690") == true, "\(String(describing: reached))")
        #expect(TaskLimit.threadsMaxReached(limit: 1000, loadavg: "0.10 0.20 0.30 2/345 678\n") == nil)
        #expect(TaskLimit.threadsMaxReached(limit: 1, loadavg: "garbage") == nil)
        // Nothing reached: all three are named.
        #expect(TaskLimit.explanation().contains("ulimit -u, /proc/sys/kernel/threads-max, the cgroup's pids.max"))
    }
}
