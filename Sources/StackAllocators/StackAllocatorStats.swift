import Synchronization

/// A snapshot of an allocator's counters.
public struct StackAllocatorStats: Sendable, Hashable, Codable {
    /// Stacks handed out since the allocator was made.
    public var allocations = 0
    /// Stacks given back.
    public var releases = 0
    /// Bytes of address space held now (guards included).
    public var bytesReserved = 0
    /// Live stacks per guard mechanism.
    public var liveByGuard: [GuardMechanism: Int] = [:]
    /// Requests served with something weaker than asked (small pages instead of huge, say).
    public var fallbacks = 0
    /// Allocations that failed because prefault failed.
    public var prefaultFailures = 0
    /// Stacks returned to the OS by trimming an idle cache.
    public var trims = 0
    /// Releases whose syscall failed (logged; the memory may be leaked).
    public var releaseFailures = 0
    /// Canary-guarded stacks found overwritten on release (logged).
    public var canaryCorruptions = 0
    /// Releases refused because the stack was not one the allocator has handed out and not yet taken
    /// back: a second release of the same stack, or a descriptor it never made (logged; nothing freed).
    public var refusedReleases = 0
    /// Stacks kept ready for reuse and not handed out: a pool's idle stacks, a slab's released slots
    /// (guard kept, pages returned to the OS).
    public var cached = 0
    /// Bytes of the allocator's stacks resident in memory. Measured only on request (it walks every stack
    /// with mincore): nil in `stats`, filled by `StackResidencyReporting.measuredStats()`.
    public var bytesResident: Int?

    /// Stacks allocated and not yet released.
    public var live: Int { allocations - releases }

    /// All zero.
    public init() {}
}

/// Thread-safe counters behind `StackAllocatorStats`, for allocators to share (ours and yours).
package final class StackStatsRecorder: Sendable {
    private let allocations = Atomic<Int>(0)
    private let releases = Atomic<Int>(0)
    private let bytesReserved = Atomic<Int>(0)
    private let liveLightweight = Atomic<Int>(0)
    private let liveProtNone = Atomic<Int>(0)
    private let liveCanary = Atomic<Int>(0)
    private let liveUnguarded = Atomic<Int>(0)
    private let fallbacks = Atomic<Int>(0)
    private let prefaultFailures = Atomic<Int>(0)
    private let trims = Atomic<Int>(0)
    private let releaseFailures = Atomic<Int>(0)
    private let canaryCorruptions = Atomic<Int>(0)
    private let refusedReleases = Atomic<Int>(0)
    private let reservesPerStack: Bool

    /// Zeroed counters. With `reservesPerStack` (the default) each allocation adds its stack's size to
    /// `bytesReserved` and each release subtracts it; allocators that reserve address space in bulk (a
    /// slab's regions, a pool's kept stacks) pass false and report it with `recordReserved(_:)`.
    package init(reservesPerStack: Bool = true) {
        self.reservesPerStack = reservesPerStack
    }

    /// Counts a stack handed out.
    package func recordAllocation(_ descriptor: StackDescriptor) {
        allocations.add(1, ordering: .relaxed)
        if reservesPerStack { bytesReserved.add(descriptor.layout.sizes.total, ordering: .relaxed) }
        adjustLive(descriptor.guardMechanism, by: 1)
    }

    /// Counts a stack given back; `failed` when its syscall failed.
    package func recordRelease(_ descriptor: StackDescriptor, failed: Bool = false) {
        releases.add(1, ordering: .relaxed)
        if reservesPerStack { bytesReserved.subtract(descriptor.layout.sizes.total, ordering: .relaxed) }
        adjustLive(descriptor.guardMechanism, by: -1)
        if failed { releaseFailures.add(1, ordering: .relaxed) }
    }

    /// Counts a request served with a fallback.
    package func recordFallback() { fallbacks.add(1, ordering: .relaxed) }
    /// Counts an allocation lost to a prefault failure.
    package func recordPrefaultFailure() { prefaultFailures.add(1, ordering: .relaxed) }
    /// Counts a canary found overwritten on release.
    package func recordCanaryCorruption() { canaryCorruptions.add(1, ordering: .relaxed) }
    /// Counts `count` stacks trimmed from a cache.
    package func recordTrim(_ count: Int = 1) { trims.add(count, ordering: .relaxed) }
    /// Moves `bytesReserved` by `delta` bytes (for recorders made with `reservesPerStack: false`).
    package func recordReserved(_ delta: Int) { bytesReserved.add(delta, ordering: .relaxed) }
    /// Counts a release whose syscall failed, for releases not counted through `recordRelease`.
    package func recordReleaseFailure() { releaseFailures.add(1, ordering: .relaxed) }
    /// Counts a release refused because it named no live stack of the allocator (not a release).
    package func recordRefusedRelease() { refusedReleases.add(1, ordering: .relaxed) }

    /// The counters now. Fields are read one by one, so a snapshot taken under load can be off by the
    /// operations in flight.
    package var snapshot: StackAllocatorStats {
        var stats = StackAllocatorStats()
        stats.allocations = allocations.load(ordering: .relaxed)
        stats.releases = releases.load(ordering: .relaxed)
        stats.bytesReserved = bytesReserved.load(ordering: .relaxed)
        for mechanism in GuardMechanism.allCases {
            let count = liveCount(mechanism)
            if count != 0 { stats.liveByGuard[mechanism] = count }
        }
        stats.fallbacks = fallbacks.load(ordering: .relaxed)
        stats.prefaultFailures = prefaultFailures.load(ordering: .relaxed)
        stats.trims = trims.load(ordering: .relaxed)
        stats.releaseFailures = releaseFailures.load(ordering: .relaxed)
        stats.canaryCorruptions = canaryCorruptions.load(ordering: .relaxed)
        stats.refusedReleases = refusedReleases.load(ordering: .relaxed)
        return stats
    }

    private func adjustLive(_ mechanism: GuardMechanism, by delta: Int) {
        switch mechanism {
        case .lightweight: liveLightweight.add(delta, ordering: .relaxed)
        case .protNone: liveProtNone.add(delta, ordering: .relaxed)
        case .canary: liveCanary.add(delta, ordering: .relaxed)
        case .none: liveUnguarded.add(delta, ordering: .relaxed)
        }
    }

    private func liveCount(_ mechanism: GuardMechanism) -> Int {
        switch mechanism {
        case .lightweight: liveLightweight.load(ordering: .relaxed)
        case .protNone: liveProtNone.load(ordering: .relaxed)
        case .canary: liveCanary.load(ordering: .relaxed)
        case .none: liveUnguarded.load(ordering: .relaxed)
        }
    }
}
