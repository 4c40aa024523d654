import FiberScheduler
import Glibc
import Synchronization

/// A third-party allocator written against the public API only: page-aligned heap memory, no guard.
/// It remembers every range it handed out, and can be told to fail after `limit` allocations.
final class CountingHeapAllocator: StackAllocator {
    let limit: Int
    let allocated = Atomic<Int>(0)
    let released = Atomic<Int>(0)
    /// Usable ranges live now.
    let live = Locked<Set<Range<UInt>>>([])
    /// Every usable range ever handed out.
    let everHandedOut = Locked<[Range<UInt>]>([])

    init(limit: Int = .max) { self.limit = limit }

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        guard allocated.load(ordering: .relaxed) < limit else {
            throw .capabilityMissing("test heap memory", fix: "the test allocator stops after \(limit) stacks")
        }
        let sizes = try StackSizes(usable: request.usableSize, guard: 0)
        var memory: UnsafeMutableRawPointer?
        let result = posix_memalign(&memory, sizes.pageSize, sizes.total)
        guard result == 0, let memory else {
            throw .capabilityMissing("heap memory", fix: "posix_memalign returned \(result)")
        }
        let layout = try StackLayout(base: UInt(bitPattern: memory), sizes: sizes)
        allocated.add(1, ordering: .relaxed)
        live.withLock { _ = $0.insert(layout.usableRange) }
        everHandedOut.withLock { $0.append(layout.usableRange) }
        return Stack(descriptor: StackDescriptor(layout: layout, guardMechanism: .none), allocator: self)
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        let known = live.withLock { $0.remove(descriptor.layout.usableRange) != nil }
        precondition(known, "released a stack this allocator did not hand out, or twice")
        free(UnsafeMutableRawPointer(bitPattern: descriptor.layout.base))
        released.add(1, ordering: .relaxed)
    }
}

/// A small, fast configuration for tests: 64 KiB stacks, 2 workers, small pools.
func testConfig(
    workers: Int = 2, initial: Int = 4, target: Int = 8, max: Int = 256, allocator: (any StackAllocator)? = nil
) -> FiberConfig {
    var config = allocator.map { FiberConfig(allocator: $0) } ?? FiberConfig()
    config.stackSize = 64 << 10
    config.guardSize = 16 << 10
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

/// A value behind a pthread mutex. Tests use it rather than `Synchronization.Mutex`, whose locking
/// ThreadSanitizer cannot see on Linux (see Sources/FiberScheduler/Lock.swift), so the suite can run
/// under `--sanitize=thread`.
final class Locked<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
