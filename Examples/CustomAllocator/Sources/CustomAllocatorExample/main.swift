// Runs jobs on fibers whose stacks come from allocators written outside FiberStacks: the README's
// `GuardedMmapAllocator`, and `TrackingAllocator` counting the stacks of the built-in mmap allocator.
// Exits 0 when every job ran and every stack came back; otherwise prints why and exits 1.
import FiberScheduler
import Glibc
import Synchronization

/// The sum of 1...100, computed by 100 jobs that each add one number.
final class Sum: Sendable {
    let value = Atomic<Int>(0)
}

/// Runs 100 jobs on a two-worker scheduler over `allocator`, then shuts it down (every stack back).
func runJobs(on allocator: any StackAllocator) throws -> Int {
    var config = FiberConfig(allocator: allocator)
    config.workerCount = 2
    config.initialPoolSize = 4
    config.targetPoolSize = 8
    let scheduler = try FiberScheduler(config: config)
    defer { scheduler.shutdown() }
    let total = scheduler.submit { () throws -> Int in
        let sum = Sum()
        let parts = JobCounter()
        for number in 1...100 { scheduler.submit(counter: parts) { sum.value.add(number, ordering: .relaxed) } }
        try parts.wait()  // suspends this fiber only
        return sum.value.load(ordering: .relaxed)
    }
    return try total.wait()
}

/// Prints `message` on stderr and exits 1.
func fail(_ message: String) -> Never {
    let line = "CustomAllocatorExample: \(message)\n"
    _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    exit(1)
}

do {
    let guarded = try runJobs(on: GuardedMmapAllocator())
    guard guarded == 5050 else { fail("GuardedMmapAllocator: the jobs summed to \(guarded), not 5050") }
    print("GuardedMmapAllocator: 100 jobs, sum \(guarded)")

    let tracking = TrackingAllocator(wrapping: try MmapStackAllocator())
    let counted = try runJobs(on: tracking)
    let live = tracking.live.load(ordering: .relaxed)
    let peak = tracking.peak.load(ordering: .relaxed)
    guard counted == 5050 else { fail("TrackingAllocator: the jobs summed to \(counted), not 5050") }
    guard peak > 0, live == 0 else { fail("TrackingAllocator: \(live) stacks still live after shutdown (peak \(peak))") }
    print("TrackingAllocator over MmapStackAllocator: 100 jobs, sum \(counted), at most \(peak) stacks live, none left")
} catch {
    fail("\(error)")
}
