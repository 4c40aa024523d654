import FiberScheduler
import Glibc
import StackTestSupport
import Testing

@Suite("What an idle scheduler costs")
struct IdleCostTests {
    @Test("128 idle workers on this machine's CPUs start, and use under a twentieth of a CPU while no job comes")
    func manyIdleWorkers() async {
        // In a child of its own: the process's CPU time is the scheduler's alone.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            var config = FiberConfig()
            config.workerCount = 128
            config.initialPoolSize = 1
            config.targetPoolSize = 1
            config.usableSize = 64 << 10
            let started = cpuSeconds()
            let scheduler: FiberScheduler
            do {
                scheduler = try FiberScheduler(config: config)
            } catch {
                fail("a scheduler of 128 workers: \(error)")
            }
            let startup = cpuSeconds() - started
            // Past the first timed-out parks, then two seconds with nothing to do.
            sleep(1)
            let before = cpuSeconds()
            sleep(2)
            let idle = cpuSeconds() - before
            scheduler.shutdown()
            ensure(idle < 0.1, "128 idle workers used \(idle) CPU seconds in 2 s (startup: \(startup) s)")
        }
    }
}

/// CPU seconds this process has used, user and system.
private func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}
