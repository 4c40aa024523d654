import FiberScheduler
import Glibc
import StackTestSupport
import Synchronization

/// A small, fast configuration for tests: 64 KiB stacks, 2 workers, small pools. `unguarded` accepts
/// stacks without a guard (the heap stacks of `CountingHeapAllocator`), which the scheduler otherwise refuses.
func testConfig(
    workers: Int = 2, initial: Int = 4, target: Int = 8, max: Int = 256, allocator: (any StackAllocator)? = nil,
    unguarded: Bool = false
) -> FiberConfig {
    var config = allocator.map { FiberConfig(allocator: $0) } ?? FiberConfig()
    config.allowGuardSmallerThanLargestFrame = unguarded || allocator is CountingHeapAllocator
    config.usableSize = 64 << 10
    config.workerCount = workers
    config.initialPoolSize = initial
    config.targetPoolSize = target
    config.maxPoolSize = max
    return config
}

/// Polls `condition` every millisecond until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = now() + seconds
    while now() < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

/// Monotonic seconds.
func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Something a job's frame holds; reports its deinit so tests can see frames unwind.
final class FrameResource: Sendable {
    private let onDeinit: @Sendable () -> Void
    init(onDeinit: @escaping @Sendable () -> Void) { self.onDeinit = onDeinit }
    deinit { onDeinit() }
}

/// Writes a line to standard error with one `write` (a child's report to its parent test).
func say(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// A flag one thread opens and another spins on.
final class Gate: Sendable {
    private let opened = Atomic<Bool>(false)
    func open() { opened.store(true, ordering: .releasing) }
    func wait() { while !opened.load(ordering: .acquiring) { sched_yield() } }
}

/// Occupies a worker with a job that spins until `gate` opens; the job is running when this returns.
func holdWorker(_ scheduler: FiberScheduler, until gate: Gate) -> JobHandle<Void> {
    let running = Gate()
    let held = scheduler.submit {
        running.open()
        gate.wait()
    }
    running.wait()
    return held
}
