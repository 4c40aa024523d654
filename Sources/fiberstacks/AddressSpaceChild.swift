import ArgumentParser
import FiberScheduler
@_spi(Benchmarks) import OverflowDetection
import Synchronization

/// `fiberstacks address-space-child` (hidden): the stacks a small address space must still allow, for
/// tests that run it under `ulimit -v`. One 512 KiB guarded mmap stack, then a two-worker scheduler
/// with 16 fibers of the default size per worker running 32 jobs that all stay suspended at once.
struct AddressSpaceChild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "address-space-child",
        abstract: "Make a guarded stack and run a small scheduler, for tests under ulimit -v (internal).",
        shouldDisplay: false)

    func run() throws {
        let allocator = try MmapStackAllocator()
        do {
            let stack = try allocator.allocate(StackRequest(usableSize: 512 << 10))
            guard GuardRegistry.entry(guarding: stack.guardRange.lowerBound) != nil else {
                throw ValidationError("the 512 KiB stack's guard is not registered")
            }
        }
        var config = FiberConfig(allocator: allocator)
        config.workerCount = 2
        config.initialPoolSize = 16
        config.targetPoolSize = 16
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown(.drain) }
        let jobs = 32
        let started = Atomic<Int>(0)
        let done = scheduler.submit(batch: (0..<jobs).map { _ in
            { @Sendable in
                started.add(1, ordering: .relaxed)
                // Keep every fiber suspended until all jobs have one: 16 live fibers per worker.
                while started.load(ordering: .relaxed) < jobs { FiberScheduler.yield() }
            }
        })
        try done.wait()
        let created = scheduler.stats.pool.created
        FileStream.standardOutput.writeLine("address-space-child: 1 guarded 512 KiB stack, \(jobs) jobs on 2 workers, \(created) fibers")
    }
}
