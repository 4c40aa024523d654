// Shared by the test targets: written against the public API only, as a third party would.
import Glibc
import StackAllocators
import Synchronization

/// A third-party allocator written against the public API only: page-aligned heap memory, no guard.
/// It remembers every range it handed out, and can be told to fail after `limit` allocations.
public final class CountingHeapAllocator: StackAllocator {
    /// Allocations allowed before it fails.
    public let limit: Int
    /// Stacks handed out so far.
    public let allocated = Atomic<Int>(0)
    /// Stacks given back so far.
    public let released = Atomic<Int>(0)
    /// Usable ranges live now.
    public let live = Locked<Set<Range<UInt>>>([])
    /// Every usable range ever handed out.
    public let everHandedOut = Locked<[Range<UInt>]>([])

    /// Fails every allocation after the first `limit`.
    public init(limit: Int = .max) { self.limit = limit }

    public func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let sizes = try StackSizes(usableSize: request.usableSize, guardSize: 0)
        // Count first, atomically, so concurrent callers cannot both pass the limit.
        guard allocated.add(1, ordering: .relaxed).newValue <= limit else {
            allocated.subtract(1, ordering: .relaxed)
            throw StackError(code: .resourceExhausted, message: "the test allocator stops after \(limit) stacks")
        }
        var memory: UnsafeMutableRawPointer?
        let result = posix_memalign(&memory, sizes.pageSize, sizes.total)
        guard result == 0, let memory else {
            allocated.subtract(1, ordering: .relaxed)
            throw StackError(message: "posix_memalign failed", fix: "free some memory", errno: result)
        }
        let layout = try StackLayout(base: UInt(bitPattern: memory), sizes: sizes)
        live.withLock { _ = $0.insert(layout.usableRange) }
        everHandedOut.withLock { $0.append(layout.usableRange) }
        return Stack(descriptor: StackDescriptor(layout: layout, guardMechanism: .none), allocator: self)
    }

    public func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        let known = live.withLock { $0.remove(descriptor.layout.usableRange) != nil }
        precondition(known, "released a stack this allocator did not hand out, or twice")
        free(UnsafeMutableRawPointer(bitPattern: descriptor.layout.base))
        released.add(1, ordering: .relaxed)
    }
}

/// A value behind a pthread mutex. Tests use it rather than `Synchronization.Mutex`, whose locking
/// ThreadSanitizer cannot see on Linux (see Sources/FiberScheduler/Lock.swift), so the suite can run
/// under `--sanitize=thread`.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    /// Wraps `value`.
    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, under the lock.
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
