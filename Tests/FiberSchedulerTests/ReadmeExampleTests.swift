import FiberScheduler
import Testing

@Suite("The README's scheduler example")
struct ReadmeExampleTests {
    @Test("compiles and runs as written")
    func example() throws {
        var config = FiberConfig(allocator: try SlabStackAllocator(.init(usableSize: 512 << 10)))  // or your own
        config.prefault = .populate                                  // grown stacks are made resident while idle
        config.workerCount = 2
        config.initialPoolSize = 2
        config.targetPoolSize = 4
        let scheduler = try FiberScheduler(config: config)
        let total = scheduler.submit { () -> Int in
            let parts = JobCounter()
            for _ in 0..<100 { scheduler.submit(counter: parts) { /* work */ } }   // each job counts itself in
            try parts.wait()                                              // suspends this fiber only
            return 100
        }
        #expect(try total.wait() == 100)
        scheduler.shutdown()                                              // drains, joins, releases every stack
    }
}
