import Synchronization

/// One thread's cache of one pool's idle stacks: slot ids, last in first out, touched without a lock.
///
/// Owned by its thread and reached through the thread's `PoolThreadTable`. Only the owner reads and
/// writes `entries`, `lowWater`, `ticks` and `lastDecay`; `count` and the counters are atomics that the
/// owner updates with plain relaxed loads and stores (no read-modify-write: nobody else writes them while
/// the owner lives) and that statistics and `close()` read from other threads. When the owner exits, the registry hands
/// the entries to the pool under its lock; when the pool dies first, its deinit takes them.
struct PoolThreadCache: ~Copyable {
    /// The pool this cache belongs to (ids are never reused).
    let poolID: UInt64
    /// Most entries held.
    let capacity: Int
    /// Slot ids; `entries[count - 1]` is the most recently released.
    let entries: UnsafeMutablePointer<UInt32>
    /// Entries held.
    let count = Atomic<Int>(0)
    /// Set by the owner around a release that settles its slot without a locked instruction; a `close()`
    /// of the pool waits until it is clear (see `PoolCore.takeBack`).
    let releasing = Atomic<Bool>(false)
    /// Stacks handed out through this thread.
    let acquired: GuardCounters
    /// Stacks given back through this thread.
    let released: GuardCounters
    /// Lowest `count` since the last decay: entries below it stayed idle for the whole period.
    var lowWater = 0
    /// Operations since the last look at the clock.
    var ticks = 0
    /// When the last decay ran (`CoarseClock` nanoseconds).
    var lastDecay: Int64

    init(poolID: UInt64, capacity: Int) {
        self.poolID = poolID
        self.capacity = capacity
        // Lines of its own, like the cache header (see `PoolRegistry.makeCache`).
        let bytes = (Swift.max(capacity, 1) * MemoryLayout<UInt32>.stride + 127) & ~127
        entries = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 128)
            .bindMemory(to: UInt32.self, capacity: bytes / MemoryLayout<UInt32>.stride)
        acquired = GuardCounters()
        released = GuardCounters()
        lastDecay = CoarseClock.now()
    }

    deinit {
        entries.deallocate()
    }
}

/// Per-guard-mechanism counters: written by one thread with relaxed loads and stores
/// (`incrementFromOwner`), or by several with atomic adds (`add`); read by any. Indexed by the mechanism's
/// declaration order, so an increment is one address computation, not a branch per mechanism.
struct GuardCounters: ~Copyable {
    private let counts: InlineArray<4, Atomic<Int>> = [Atomic(0), Atomic(0), Atomic(0), Atomic(0)]

    @inline(__always)
    private static func index(_ mechanism: GuardMechanism) -> Int {
        switch mechanism {
        case .lightweight: 0
        case .protNone: 1
        case .canary: 2
        case .none: 3
        }
    }

    /// Adds one, from the owning thread only (a load and a store: no locked instruction).
    @inline(__always)
    func incrementFromOwner(_ mechanism: GuardMechanism) {
        let index = Self.index(mechanism)
        counts[index].store(counts[index].load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }

    /// Adds `amount`, from any thread.
    func add(_ mechanism: GuardMechanism, _ amount: Int) {
        counts[Self.index(mechanism)].wrappingAdd(amount, ordering: .relaxed)
    }

    /// The count for `mechanism`.
    func value(_ mechanism: GuardMechanism) -> Int {
        counts[Self.index(mechanism)].load(ordering: .relaxed)
    }
}

/// A thread's cache as the registry keeps it: the pointer, sendable because the registry's lock and the
/// ownership rules of `PoolThreadCache` order every access to it.
struct PoolThreadCacheReference: @unchecked Sendable, Equatable {
    /// The cache.
    let cache: UnsafeMutablePointer<PoolThreadCache>
}

/// A thread's caches, one per pool it used, indexed by the pool's registry index. Stored behind the
/// registry's pthread key; freed, with every cache in it, when the thread exits.
struct PoolThreadTable {
    /// Entries in `caches`.
    var capacity: Int
    /// Caches by pool registry index; nil where the thread has none.
    var caches: UnsafeMutablePointer<UnsafeMutablePointer<PoolThreadCache>?>
}
