import FiberScheduler
import GuardPages
import Glibc
import Testing

@Suite("A fiber that overflows its stack")
struct FiberOverflowTests {
    @Test("dies by SIGSEGV with the diagnostic naming the fiber and its worker")
    func overflowNamesFiberAndWorker() async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) {
            var config = FiberConfig()
            config.usableSize = 64 << 10
            config.workerCount = 1
            config.initialPoolSize = 1
            config.targetPoolSize = 1
            let scheduler = try FiberScheduler(config: config)
            let handle = scheduler.submit { () -> Int in StackThread.overflow() }
            _ = try handle.wait()
        }
        let stderr = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(stderr.contains(#/stack overflow in fiber "fiber \d+ on worker 0 \(cpu \d+, node \d+\)"/#), "\(stderr)")
        #expect(stderr.contains("fs-worker-0"), "\(stderr)")
        #expect(stderr.contains("below the usable bottom"), "\(stderr)")
    }
}
