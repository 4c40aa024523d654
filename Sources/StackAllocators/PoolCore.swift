@_spi(Benchmarks) import GuardPages
import CStackSupport
import Glibc
import Logging
import Synchronization
import SystemPackage

/// The pool behind `PooledStackAllocator` handles: a per-thread cache with no lock on the hot path, a
/// shared depot behind a mutex, a floor and a cap, and trimming of stacks that stayed idle for
/// `idlePeriod` (see `PooledStackAllocator` for the behaviour users see).
///
/// The pool owns the inner allocator's `Stack`s and hands out `Stack`s of its own for them (same memory,
/// same guard; the tag holds the slot id and a generation). A pooled `Stack` holds no reference to the
/// pool (`Stack.pool`), so acquire and release pay no retain and no release. Instead the pool
/// stays alive while any of its stacks is out: a handle's deinit (`close()`) marks every slot handed out
/// at that moment as orphaned and counts them; a release that finds its slot orphaned uncounts it, and the
/// pool holds a strong reference to itself while the count is above zero. A stack handed out through a
/// handle that is still alive is covered by that handle's own `close()`.
///
/// A pooled stack's release (`takeBack`) does all its work first and marks the slot idle last: once the
/// slot is idle and not orphaned the pool may be gone, so nothing after it touches the pool. Until the
/// first `close()` that mark is a plain store, ordered against `close()` without a fence on the release
/// side: the release raises its thread cache's `releasing` flag, then reads `closing`; `close()` sets
/// `closing`, runs a process-wide barrier (membarrier), then waits for every cache's flag to clear. Either
/// the release sees `closing` and takes the compare-and-exchange path, or `close()` sees the flag and
/// waits for the release to finish. Where the barrier is unavailable, every release takes the
/// compare-and-exchange path. Releases through `release(_:token:)` come only from a `Stack` built with
/// the public initializer, a second owner by definition: they are all refused.
@usableFromInline final class PoolCore: Sendable {
    /// Where the pooled stacks come from and go back to.
    let inner: any StackAllocator
    /// The configuration the pool was made with.
    let configuration: PooledStackAllocator.Configuration
    /// Sizes of the pooled stacks (validated and rounded).
    let sizes: StackSizes
    private let logger: Logger
    private let key: pthread_key_t
    private let registryIndex: Int
    private let poolID: UInt64
    private let slots = PoolSlotTable()
    private let depot = Lock(PoolDepot())
    /// Trims, prefault failures, hygiene failures, bytes reserved.
    private let recorder = StackStatsRecorder(reservesPerStack: false)
    /// Operations of threads without a cache, and of caches whose thread exited.
    private let sharedAcquired = GuardCounters()
    private let sharedReleased = GuardCounters()
    /// Whether a release scrubs or discards (the configuration asks for work on every release).
    private let cleansEveryRelease: Bool
    /// `configuration.idlePeriod` in `CoarseClock` nanoseconds.
    private let idleNanoseconds: Int64
    /// Orphaned stacks not yet back, plus `closingBias` for each `close()` under way. The pool holds a
    /// strong reference to itself while this is above zero.
    private let orphans = Atomic<Int>(0)
    /// Keeps `orphans` above zero while a `close()` marks slots, whatever the releases do meanwhile.
    private static let closingBias = 1 << 40
    /// Whether releases must settle their slot with a compare-and-exchange: set by the first `close()`, or
    /// from the start where the process barrier is unavailable.
    private let closing: Atomic<Bool>
    /// Set once a failed discard below the hot watermark has been logged: where madvise is refused every
    /// release would log one.
    private let discardFailureLogged = Atomic<Bool>(false)
    /// Registers the process for `fs_process_barrier` once; nil, or why it is unavailable.
    private static let processBarrierUnavailable: Errno? = {
        let code = fs_process_barrier_register()
        return code == 0 ? nil : Errno(rawValue: code)
    }()

    /// A pool over `inner`. Makes `minimumIdle` stacks now; throws what `inner` throws for them, or a
    /// typed error for an invalid configuration.
    init(
        wrapping inner: any StackAllocator, _ configuration: PooledStackAllocator.Configuration, logger: Logger
    ) throws(StackError) {
        sizes = try configuration.validated()
        switch PoolRegistry.key {
        case .success(let key): self.key = key
        case .failure(let errno):
            throw .capabilityMissing(
                "a pthread key for the pools' thread caches (\(errno))",
                fix: "the process used all PTHREAD_KEYS_MAX (1024) thread-specific keys; delete unused ones")
        }
        self.inner = inner
        self.configuration = configuration
        cleansEveryRelease = configuration.scrubOnRelease || configuration.hotWatermark?.timing == .everyRelease
        idleNanoseconds = CoarseClock.nanoseconds(configuration.idlePeriod)
        self.logger = logger
        closing = Atomic(Self.processBarrierUnavailable != nil)
        if let errno = Self.processBarrierUnavailable {
            logger.notice(
                "membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) failed: each pooled release uses a locked compare-and-exchange",
                metadata: [
                    "errno": "\(errno)",
                    // EPERM (or ENOSYS on a kernel that has it) is a filter; EINVAL and ENOSYS, a kernel before 4.14.
                    "fix": errno == .notPermitted || (errno == .noFunction && (kernelVersion.map { $0 >= (4, 14) } ?? false))
                        ? "a seccomp profile that allows the membarrier system call" : "Linux 4.14 or later",
                ])
        }
        (registryIndex, poolID) = PoolRegistry.register()
        PoolRegistry.attach(self, index: registryIndex)
        for _ in 0..<configuration.minimumIdle {
            // Into the depot one by one: if a later one throws, deinit gives these back.
            let slot = try makeStack(prefault: configuration.stack.prefault)
            depot.withLock { $0.put(CollectionOfOne(slot), now: CoarseClock.now()) }
        }
    }

    deinit {
        // No pooled stack is out (while one is, a handle or the orphan count holds the pool): every stack
        // is idle in a cache or the depot.
        PoolRegistry.unregister(index: registryIndex) { cache in absorb(cache, discarding: false) }
        let all = depot.withLock { depot in
            var all: [UInt32] = []
            _ = depot.take(upTo: depot.idle.count) { all.append($0) }
            return all
        }
        retire(all, trimmed: false)
    }

    // MARK: - Acquire and release

    /// See `PooledStackAllocator.allocate(_:)` (inlined there: its only caller).
    @inline(__always)
    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        if request.usableSize != configuration.stack.usableSize || request.guardSize != configuration.stack.guardSize
            || request.pages != configuration.stack.pages || request.placement != configuration.stack.placement
        {
            try accept(request)
        }
        let cache = localCache()
        let slot: UInt32
        if let cache {
            let count = cache.pointee.count.load(ordering: .relaxed)
            if count > 0 {
                slot = cache.pointee.entries[count - 1]
                cache.pointee.count.store(count - 1, ordering: .relaxed)
                if count - 1 < cache.pointee.lowWater { cache.pointee.lowWater = count - 1 }
            } else {
                slot = try refill(cache)
            }
        } else {
            slot = try takeShared()
        }
        if request.prefault.strategy != .none {
            do {
                try Prefault.apply(request.prefault, to: slots.inner(slot).layout, logger: logger)
            } catch {
                // Back to the inner allocator, not to the cache: it may be the stack just made for this call.
                recorder.recordPrefaultFailure()
                retire([slot], trimmed: false)
                throw error
            }
        }
        let descriptor = slots.lend(slot)
        if let cache {
            cache.pointee.acquired.incrementFromOwner(descriptor.guardMechanism)
        } else {
            sharedAcquired.add(descriptor.guardMechanism, 1)
        }
        return Stack(descriptor: descriptor, pool: self)
    }

    /// Refuses (logs, counts in `refusedReleases`, caches nothing) every descriptor: the pool's own stacks
    /// come back through `takeBack`, so this is reached only by a `Stack` built with the public initializer,
    /// a second owner of memory the pool handed out, or of memory it never made.
    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        recorder.recordRefusedRelease(descriptor, allocator: "pool", logger: logger)
    }

    /// Takes back a stack this pool handed out, from its `Stack`'s deinit: `allocate` alone makes pooled
    /// `Stack`s, and a `~Copyable` stack is dropped once, so this runs once per stack handed out. On the
    /// fast path (a thread cache, no per-release hygiene) the slot goes into the cache first and is marked
    /// idle last: loads and stores into thread-local memory and the slot's state, no locked instruction
    /// before the first `close()` (see the type's documentation), one compare-and-exchange after it.
    /// Inlined into `Stack`'s deinit: a call less per release (docs/slab-and-pools.md has the figures);
    /// other allocators' stacks measured no slower. Takes the two fields it needs, not the descriptor: a copy
    /// of the descriptor reads back, with wider loads, what `allocate` just wrote field by field, and the
    /// processor then cannot forward the stores to the loads (a stall of most of a release).
    @inline(__always)
    func takeBack(tag: UInt, mechanism: GuardMechanism) {
        guard !cleansEveryRelease, let cache = localCache() else { return takeBackSlowly(tag: tag, mechanism: mechanism) }
        put(UInt32(truncatingIfNeeded: tag), into: cache, mechanism)
        // Last: once the slot is idle and not orphaned, the pool may be gone. `close()` waits while the flag
        // is up, so nothing that can block goes between the two stores.
        cache.pointee.releasing.store(true, ordering: .relaxed)
        // No fence: `close()`'s process barrier orders this store before the load below.
        fs_compiler_barrier()
        if closing.load(ordering: .relaxed) {
            cache.pointee.releasing.store(false, ordering: .relaxed)
            settle(tag: tag)
        } else {
            let settled = slots.settleOpen(tag: tag)
            cache.pointee.releasing.store(false, ordering: .releasing)
            if settled == .orphaned { adjustOrphans(by: -1) }
        }
    }

    /// `takeBack` with per-release hygiene or without a thread cache: the pool keeps itself alive for the
    /// duration, so the slot is marked idle first.
    private func takeBackSlowly(tag: UInt, mechanism: GuardMechanism) {
        let alive = Unmanaged.passRetained(self)
        defer { alive.release() }
        settle(tag: tag)
        let slot = UInt32(truncatingIfNeeded: tag)
        if cleansEveryRelease, !prepareForNextOwner(slots.inner(slot).layout) {
            // Not clean: it must not reach another owner. The inner allocator takes it back.
            if let cache = localCache() {
                cache.pointee.released.incrementFromOwner(mechanism)
            } else {
                sharedReleased.add(mechanism, 1)
            }
            retire([slot], trimmed: false)
            return
        }
        guard let cache = localCache() else {
            sharedReleased.add(mechanism, 1)
            deposit(CollectionOfOne(slot))
            return
        }
        put(slot, into: cache, mechanism)
    }

    /// Puts a released slot on top of the calling thread's cache (the older half goes to the depot when the
    /// cache is full) and counts the release.
    @inline(__always)
    private func put(_ slot: UInt32, into cache: UnsafeMutablePointer<PoolThreadCache>, _ mechanism: GuardMechanism) {
        cache.pointee.released.incrementFromOwner(mechanism)
        let count = cache.pointee.count.load(ordering: .relaxed)
        if count < cache.pointee.capacity {
            cache.pointee.entries[count] = slot
            cache.pointee.count.store(count + 1, ordering: .relaxed)
        } else {
            overflow(cache, adding: slot)
        }
        tick(cache)
    }

    /// Marks the slot of a stack coming back idle; uncounts it if a `close()` orphaned it.
    @inline(__always)
    private func settle(tag: UInt) {
        if slots.settle(tag: tag) == .orphaned { adjustOrphans(by: -1) }
    }

    // MARK: - Lifetime

    /// Called when a handle is dropped: counts the stacks out now as orphans, each of which keeps the pool
    /// alive until it comes back. Stacks handed out meanwhile through another handle are counted when that
    /// handle is dropped.
    func close() {
        adjustOrphans(by: Self.closingBias)
        if Self.processBarrierUnavailable == nil {
            closing.store(true, ordering: .relaxed)
            waitForOpenReleases()
        }
        let marked = depot.withLock { depot in slots.orphanLent(below: depot.nextSlot) }
        adjustOrphans(by: marked - Self.closingBias)
    }

    /// After `closing` is set: makes every release that has not yet read it see it, and waits for those
    /// that read it before to finish. A failed barrier, or a flag still up after a second (a `fork` copied
    /// it from a thread the child does not have), is logged and not waited for: a release that raced with
    /// it may then leave its stack counted as an orphan, which keeps the pool (never frees it early).
    private func waitForOpenReleases() {
        let code = fs_process_barrier()
        if code != 0 {
            logger.error(
                "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed while closing a pool: it may stay allocated",
                metadata: ["errno": "\(Errno(rawValue: code))", "fix": "a seccomp profile that allows the membarrier system call"])
        }
        let deadline = CoarseClock.now() &+ 1_000_000_000
        PoolRegistry.forEachCache(index: registryIndex) { cache in
            while cache.pointee.releasing.load(ordering: .acquiring) {
                guard CoarseClock.now() < deadline else {
                    logger.error("a release into a thread cache did not finish within a second while closing a pool: it may stay allocated")
                    return
                }
                sched_yield()
            }
        }
    }

    /// Moves the orphan count; the pool holds itself while it is above zero. The caller keeps the pool
    /// alive: a handle, a `close()` under way, or an orphaned stack not yet uncounted.
    private func adjustOrphans(by delta: Int) {
        let (old, new) = orphans.wrappingAdd(delta, ordering: .acquiringAndReleasing)
        if old == 0 { _ = Unmanaged.passRetained(self) }
        if new == 0 { Unmanaged.passUnretained(self).release() }
    }

    // MARK: - Trimming, statistics

    /// See `PooledStackAllocator.trim()`.
    func trim() -> Int {
        var trimmed = 0
        if let cache = existingLocalCache() {
            let count = cache.pointee.count.load(ordering: .relaxed)
            trimmed += deposit(UnsafeBufferPointer(start: cache.pointee.entries, count: count))
            cache.pointee.count.store(0, ordering: .relaxed)
            cache.pointee.lowWater = 0
        }
        trimmed += giveBack(depot.withLock { depot in
            depot.expire(
                now: CoarseClock.now(), period: idleNanoseconds, floor: configuration.minimumIdle,
                cap: configuration.maximumIdle, force: true)
        })
        return trimmed
    }

    /// See `PooledStackAllocator.stats`.
    var stats: StackAllocatorStats {
        var stats = recorder.snapshot
        var cached = 0
        var acquired: [GuardMechanism: Int] = [:]
        var released: [GuardMechanism: Int] = [:]
        for mechanism in GuardMechanism.allCases {
            acquired[mechanism] = sharedAcquired.value(mechanism)
            released[mechanism] = sharedReleased.value(mechanism)
        }
        PoolRegistry.forEachCache(index: registryIndex) { cache in
            cached += cache.pointee.count.load(ordering: .relaxed)
            for mechanism in GuardMechanism.allCases {
                acquired[mechanism]! += cache.pointee.acquired.value(mechanism)
                released[mechanism]! += cache.pointee.released.value(mechanism)
            }
        }
        stats.cached = cached + depot.withLock { $0.idle.count }
        stats.allocations = acquired.values.reduce(0, +)
        stats.releases = released.values.reduce(0, +)
        stats.liveByGuard = [:]
        for mechanism in GuardMechanism.allCases where acquired[mechanism]! != released[mechanism]! {
            stats.liveByGuard[mechanism] = acquired[mechanism]! - released[mechanism]!
        }
        return stats
    }

    /// See `PooledStackAllocator.residentBytes()`.
    func residentBytes() throws(StackError) -> Int {
        try depot.withLock { (depot) throws(StackError) -> Int in
            var total = 0
            for slot in depot.heldSlots {
                let layout = slots.inner(slot).layout
                total += try StackAllocators.residentBytes(in: layout.base..<layout.top)
            }
            return total
        }
    }

    // MARK: - Thread caches

    /// The calling thread's cache for this pool: a thread-local load and three more when it exists.
    /// Nil when caches are disabled (`threadCacheSize` 0) or the thread's table could not be stored.
    @inline(__always)
    private func localCache() -> UnsafeMutablePointer<PoolThreadCache>? {
        if let cache = existingLocalCache() { return cache }
        guard configuration.threadCacheSize > 0 else { return nil }
        return PoolRegistry.makeCache(
            key: key, index: registryIndex, poolID: poolID, capacity: configuration.threadCacheSize)
    }

    @inline(__always)
    private func existingLocalCache() -> UnsafeMutablePointer<PoolThreadCache>? {
        guard let table = PoolRegistry.currentTable,
            registryIndex < table.pointee.capacity, let cache = table.pointee.caches[registryIndex],
            cache.pointee.poolID == poolID
        else { return nil }
        return cache
    }

    /// Every 256th release into a cache, looks at the clock and, once `idlePeriod` has passed, moves the
    /// stacks below the cache's low-water mark (unused for the whole period) to the depot.
    @inline(__always)
    private func tick(_ cache: UnsafeMutablePointer<PoolThreadCache>) {
        cache.pointee.ticks &+= 1
        if cache.pointee.ticks & 255 == 0 { decay(cache) }
    }

    private func decay(_ cache: UnsafeMutablePointer<PoolThreadCache>) {
        let now = CoarseClock.now()
        guard now &- cache.pointee.lastDecay >= idleNanoseconds else { return }
        cache.pointee.lastDecay = now
        let idle = cache.pointee.lowWater
        let count = cache.pointee.count.load(ordering: .relaxed)
        if idle > 0 {
            depositBottom(of: cache, idle, count: count)
        }
        cache.pointee.lowWater = count - idle
    }

    /// A full cache sends its older half to the depot, then takes `slot`.
    private func overflow(_ cache: UnsafeMutablePointer<PoolThreadCache>, adding slot: UInt32) {
        let count = cache.pointee.count.load(ordering: .relaxed)
        let moving = Swift.max(1, count / 2)
        depositBottom(of: cache, moving, count: count)
        cache.pointee.entries[count - moving] = slot
        cache.pointee.count.store(count - moving + 1, ordering: .relaxed)
        cache.pointee.lowWater = Swift.min(cache.pointee.lowWater, count - moving)
    }

    /// Moves the `moving` oldest entries of a cache holding `count` to the depot and shifts the rest down.
    private func depositBottom(of cache: UnsafeMutablePointer<PoolThreadCache>, _ moving: Int, count: Int) {
        let entries = cache.pointee.entries
        deposit(UnsafeBufferPointer(start: entries, count: moving))
        entries.update(from: entries + moving, count: count - moving)
        cache.pointee.count.store(count - moving, ordering: .relaxed)
    }

    /// An empty cache takes half its capacity from the depot (warmest first) and returns one of them;
    /// with an empty depot, a new stack from the inner allocator.
    private func refill(_ cache: UnsafeMutablePointer<PoolThreadCache>) throws(StackError) -> UInt32 {
        let batch = Swift.max(1, cache.pointee.capacity / 2)
        let entries = cache.pointee.entries
        let (taken, expired) = depot.withLock { depot in
            let expired = depotExpiry(&depot)
            var index = 0
            let taken = depot.take(upTo: batch) { slot in
                entries[index] = slot
                index += 1
            }
            return (taken, expired)
        }
        giveBack(expired)
        guard taken > 0 else { return try makeStack(prefault: .none) }
        // The warmest was taken last: hand it out, keep the rest.
        cache.pointee.count.store(taken - 1, ordering: .relaxed)
        return entries[taken - 1]
    }

    // MARK: - Depot

    /// Without a thread cache: one stack from the depot, or a new one.
    private func takeShared() throws(StackError) -> UInt32 {
        let (taken, expired) = depot.withLock { depot in
            let expired = depotExpiry(&depot)
            var taken: UInt32?
            _ = depot.take(upTo: 1) { taken = $0 }
            return (taken, expired)
        }
        giveBack(expired)
        if let taken { return taken }
        return try makeStack(prefault: .none)
    }

    /// Puts idle stacks in the depot (after discarding below the watermark when that happens on deposit),
    /// then gives back what exceeds the cap and what the periodic trim pass finds idle too long. Returns
    /// how many were trimmed.
    @discardableResult
    private func deposit<Slots: Collection<UInt32>>(_ idle: Slots) -> Int {
        guard !idle.isEmpty else { return 0 }
        if let watermark = configuration.hotWatermark, watermark.timing == .whenDeposited {
            for slot in idle { _ = discard(slots.inner(slot).layout, keeping: watermark.bytes) }
        }
        return giveBack(depot.withLock { depot in
            depot.put(idle, now: CoarseClock.now())
            return depotExpiry(&depot)
        })
    }

    /// Gives back to the inner allocator what a depot pass expired; returns how many were trims.
    @discardableResult
    private func giveBack(_ expired: (overCap: [UInt32], trimmed: [UInt32])) -> Int {
        retire(expired.overCap, trimmed: false)
        retire(expired.trimmed, trimmed: true)
        return expired.trimmed.count
    }

    /// What the depot must give back now: stacks over the cap, and, once per `idlePeriod`, stacks idle
    /// that long above the floor.
    private func depotExpiry(_ depot: inout PoolDepot) -> (overCap: [UInt32], trimmed: [UInt32]) {
        depot.expire(
            now: CoarseClock.now(), period: idleNanoseconds, floor: configuration.minimumIdle,
            cap: configuration.maximumIdle, force: false)
    }

    /// Takes the stacks of a cache whose thread exited, or of every cache when the pool dies (called under
    /// the registry lock). Counts fold into the shared counters.
    func absorb(exitingCache cache: UnsafeMutablePointer<PoolThreadCache>) {
        for mechanism in GuardMechanism.allCases {
            sharedAcquired.add(mechanism, cache.pointee.acquired.value(mechanism))
            sharedReleased.add(mechanism, cache.pointee.released.value(mechanism))
        }
        absorb(cache, discarding: true)
    }

    /// Moves a cache's entries to the depot, discarding below the watermark if asked and configured.
    private func absorb(_ cache: UnsafeMutablePointer<PoolThreadCache>, discarding: Bool) {
        let count = cache.pointee.count.load(ordering: .relaxed)
        let entries = Array(UnsafeBufferPointer(start: cache.pointee.entries, count: count))
        cache.pointee.count.store(0, ordering: .relaxed)
        if discarding, let watermark = configuration.hotWatermark, watermark.timing == .whenDeposited {
            for slot in entries { _ = discard(slots.inner(slot).layout, keeping: watermark.bytes) }
        }
        depot.withLock { $0.put(entries, now: CoarseClock.now()) }
    }

    // MARK: - Inner stacks

    /// Takes a new stack from the inner allocator into a free slot.
    private func makeStack(prefault: PrefaultPolicy) throws(StackError) -> UInt32 {
        let request = StackRequest(
            usableSize: sizes.usableSize, guardSize: sizes.guardSize, pages: configuration.stack.pages, prefault: prefault,
            placement: configuration.stack.placement)
        let stack = UnsafeMutablePointer<Stack>.allocate(capacity: 1)
        defer { stack.deallocate() }
        stack.initialize(to: try inner.allocate(request))
        let total = stack.pointee.descriptor.layout.sizes.total
        let slot: UInt32? = depot.withLock { depot in
            guard let slot = depot.reserveSlot() else { return nil }
            slots.fill(slot, with: stack.move())
            return slot
        }
        guard let slot else {
            stack.deinitialize(count: 1)
            throw .poolExhausted(
                "more than \(PoolSlotTable.capacity) stacks in one pool", fix: "use several pools, or a lower cap")
        }
        recorder.recordReserved(total)
        return slot
    }

    /// Gives the stacks in `victims` back to the inner allocator (outside the depot lock).
    private func retire(_ victims: [UInt32], trimmed: Bool) {
        guard !victims.isEmpty else { return }
        let stacks = UnsafeMutablePointer<Stack>.allocate(capacity: victims.count)
        var bytes = 0
        depot.withLock { depot in
            for (index, slot) in victims.enumerated() {
                (stacks + index).initialize(to: slots.empty(slot))
                bytes += stacks[index].descriptor.layout.sizes.total
            }
            depot.releaseSlots(victims)
        }
        stacks.deinitialize(count: victims.count)
        stacks.deallocate()
        recorder.recordReserved(-bytes)
        if trimmed { recorder.recordTrim(victims.count) }
    }

    // MARK: - Between owners

    /// Applies the per-release hygiene: the watermark when it is per release, then the scrub. Returns
    /// false (logged, counted as a release failure) when the stack could not be made clean.
    private func prepareForNextOwner(_ layout: StackLayout) -> Bool {
        var scrubRange = layout.usableRange
        if let watermark = configuration.hotWatermark, watermark.timing == .everyRelease {
            guard case .success(let discarded) = discard(layout, keeping: watermark.bytes) else { return false }
            if let discarded { scrubRange = discarded.upperBound..<layout.top }
        }
        guard configuration.scrubOnRelease else { return true }
        do {
            try StackHygiene.scrub(scrubRange)
            return true
        } catch {
            recorder.recordReleaseFailure()
            logger.error(
                "scrubbing a released stack failed; it goes back to the inner allocator",
                metadata: ["stack": "\(layout)", "error": "\(error)"])
            return false
        }
    }

    /// Discards below the watermark; a failure is counted as a release failure, and the first one logged.
    private func discard(_ layout: StackLayout, keeping hotBytes: Int) -> Result<Range<UInt>?, Errno> {
        let result = StackHygiene.discardBelow(hotBytes: hotBytes, of: layout)
        if case .failure(let errno) = result {
            recorder.recordReleaseFailure()
            if !discardFailureLogged.exchange(true, ordering: .relaxed) {
                logger.error(
                    "MADV_DONTNEED below the hot watermark failed; later failures of this pool are counted in releaseFailures, not logged",
                    metadata: ["stack": "\(layout)", "errno": "\(errno)", "why": "\(StackHygiene.discards.missing ?? "this stack alone")"])
            }
        }
        return result
    }

    /// Checks a request that is not exactly the pool's shape: it must fit the pooled stacks.
    private func accept(_ request: StackRequest) throws(StackError) {
        try StackShape(
            sizes: sizes, pages: configuration.stack.pages, placement: configuration.stack.placement, owner: "pool"
        ).accept(request)
    }
}
