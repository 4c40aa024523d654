import Logging

/// A cache of stacks over any allocator: a per-thread cache with no lock on the hot path, a shared depot
/// behind a mutex, a floor and a cap, and trimming of stacks that stayed idle for `idlePeriod`.
///
/// The pool owns the inner allocator's `Stack`s and hands out `Stack`s of its own for them (same memory,
/// same guard). Releasing one puts it in the releasing thread's cache: a few loads and stores, no locked
/// instruction (one compare-and-exchange once a handle on the pool was dropped, or where `membarrier` is
/// unavailable), no lock, no syscall, unless the configuration asks for a scrub or a watermark on every
/// release. A thread's cache overflows half of itself into the depot, refills half of itself from
/// it, and decays: stacks that sat unused below its low-water mark for `idlePeriod` move to the depot.
/// The depot keeps at most `maximumIdle` stacks and gives back to the inner allocator those idle for
/// `idlePeriod`, down to `minimumIdle`. A thread's cache is handed to the depot when the thread exits.
///
/// A pooled `Stack` holds no reference to the pool (a retain and a release would cost more than the rest
/// of an acquire and release). The pool stays alive anyway: when this object is dropped while stacks are
/// out, the pool keeps itself until the last of them comes back, and a stack's `allocator` is a new handle
/// on the same pool. Only stacks the pool handed out are taken back: a `Stack` built with
/// `Stack.init(descriptor:allocator:)` for this pool is refused when released (logged, counted in
/// `refusedReleases`).
///
/// Guards are the inner allocator's and stay in place while a stack is pooled: releasing a pooled stack
/// never unmaps it. See docs/slab-and-pools.md for the watermark (`MADV_DONTNEED`) and scrub choices.
public final class PooledStackAllocator: StackAllocator, StackStatsReporting, StackResidencyReporting {
    /// The pool this handle is on.
    let core: PoolCore

    /// Where the pooled stacks come from and go back to.
    package var inner: any StackAllocator { core.inner }
    /// The configuration the pool was made with.
    package var configuration: Configuration { core.configuration }
    /// Sizes of the pooled stacks (validated and rounded).
    package var sizes: StackSizes { core.sizes }

    /// The sizes every stack of this allocator has.
    public var fixedSizes: StackSizes? { sizes }

    /// A pool over `inner`. Makes `minimumIdle` stacks now; throws what `inner` throws for them, or a
    /// typed error for an invalid configuration.
    public convenience init(
        wrapping inner: any StackAllocator, _ configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "fiberstacks.pool")
    ) throws(StackError) {
        self.init(core: try PoolCore(wrapping: inner, configuration, logger: logger))
    }

    /// A handle on an existing pool (a pooled stack's `allocator`).
    init(core: PoolCore) {
        self.core = core
    }

    deinit {
        core.close()
    }

    public func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        try core.allocate(request)
    }

    /// Refuses the release: the pool's own stacks never come back this way (see the type's documentation).
    public func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        core.release(descriptor, token: token)
    }

    /// Moves the calling thread's cached stacks to the depot (discarding below the watermark), then gives
    /// back to the inner allocator the depot's stacks idle for `idlePeriod` or longer, keeping
    /// `minimumIdle`. Returns how many were given back. Other threads' caches decay on their own
    /// operations and are emptied when their threads exit.
    @discardableResult
    public func trim() -> Int {
        core.trim()
    }

    /// Counters; `cached` counts idle stacks in the depot and in every thread's cache, `bytesReserved`
    /// the stacks the pool holds (handed out and idle).
    public var stats: StackAllocatorStats { core.stats }

    /// Resident bytes of every stack the pool holds, handed out or idle (mincore, one call per stack).
    public func residentBytes() throws(StackError) -> Int {
        try core.residentBytes()
    }
}
