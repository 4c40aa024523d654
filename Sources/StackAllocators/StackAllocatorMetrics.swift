import Logging
import Metrics

/// Exports an allocator's `StackAllocatorStats` through swift-metrics, to whatever backend the program
/// bootstrapped (`MetricsSystem.bootstrap`) or the factory passed in.
///
/// Every metric carries the dimension `allocator` = the name given. Gauges: `fiberstacks_stacks_live`,
/// `fiberstacks_stacks_live_by_guard` (also dimension `guard` = `lightweight`, `protNone`, `canary`,
/// `none`), `fiberstacks_stacks_cached`, `fiberstacks_bytes_reserved` and, when residency is measured,
/// `fiberstacks_bytes_resident`. Counters (incremented by what changed since the last `record()`):
/// `fiberstacks_stack_allocations`, `fiberstacks_stack_releases`, `fiberstacks_fallbacks`,
/// `fiberstacks_prefault_failures`, `fiberstacks_trims`, `fiberstacks_release_failures`,
/// `fiberstacks_refused_releases`.
/// Values are read when `record()` runs, on demand or every interval with `run(every:)`.
public final class StackAllocatorMetrics: Sendable {
    private let read: @Sendable () throws(StackError) -> StackAllocatorStats
    private let live: Gauge
    private let liveByGuard: [GuardMechanism: Gauge]
    private let cached: Gauge
    private let bytesReserved: Gauge
    private let bytesResident: Gauge?
    private let allocations: Counter
    private let releases: Counter
    private let fallbacks: Counter
    private let prefaultFailures: Counter
    private let trims: Counter
    private let releaseFailures: Counter
    private let refusedReleases: Counter
    private let last = Lock(StackAllocatorStats())

    /// Exports `allocator`'s counters under `name`.
    public convenience init(
        _ allocator: some StackAllocator & StackStatsReporting, name: String,
        factory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.init(name: name, measuresResidency: false, factory: factory) { allocator.stats }
    }

    /// Exports `allocator`'s counters under `name`; with `measuringResidency`, each `record()` also
    /// measures its resident bytes (mincore over every stack it holds: mind the cost on large allocators).
    public convenience init(
        _ allocator: some StackAllocator & StackResidencyReporting, name: String, measuringResidency: Bool,
        factory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.init(name: name, measuresResidency: measuringResidency, factory: factory) { () throws(StackError) in
            measuringResidency ? try allocator.measuredStats() : allocator.stats
        }
    }

    private init(
        name: String, measuresResidency: Bool, factory: any MetricsFactory,
        read: @escaping @Sendable () throws(StackError) -> StackAllocatorStats
    ) {
        self.read = read
        let dimensions = [("allocator", name)]
        func gauge(_ label: String, _ extra: [(String, String)] = []) -> Gauge {
            Gauge(label: "fiberstacks_" + label, dimensions: dimensions + extra, factory: factory)
        }
        func counter(_ label: String) -> Counter {
            Counter(label: "fiberstacks_" + label, dimensions: dimensions, factory: factory)
        }
        live = gauge("stacks_live")
        var byGuard: [GuardMechanism: Gauge] = [:]
        for mechanism in GuardMechanism.allCases {
            byGuard[mechanism] = gauge("stacks_live_by_guard", [("guard", mechanism.rawValue)])
        }
        liveByGuard = byGuard
        cached = gauge("stacks_cached")
        bytesReserved = gauge("bytes_reserved")
        bytesResident = measuresResidency ? gauge("bytes_resident") : nil
        allocations = counter("stack_allocations")
        releases = counter("stack_releases")
        fallbacks = counter("fallbacks")
        prefaultFailures = counter("prefault_failures")
        trims = counter("trims")
        releaseFailures = counter("release_failures")
        refusedReleases = counter("refused_releases")
    }

    /// Reads the allocator's stats now and records them. Throws only when measuring residency fails.
    /// Calls are serialized, so a counter never counts a change twice and a gauge never goes back in time.
    public func record() throws(StackError) {
        try last.withLock { (previous) throws(StackError) in
            let stats = try read()
            live.record(stats.live)
            for (mechanism, gauge) in liveByGuard {
                gauge.record(stats.liveByGuard[mechanism] ?? 0)
            }
            cached.record(stats.cached)
            bytesReserved.record(stats.bytesReserved)
            if let bytesResident, let resident = stats.bytesResident {
                bytesResident.record(resident)
            }
            for (counter, now, before) in [
                (allocations, stats.allocations, previous.allocations),
                (releases, stats.releases, previous.releases),
                (fallbacks, stats.fallbacks, previous.fallbacks),
                (prefaultFailures, stats.prefaultFailures, previous.prefaultFailures),
                (trims, stats.trims, previous.trims),
                (releaseFailures, stats.releaseFailures, previous.releaseFailures),
                (refusedReleases, stats.refusedReleases, previous.refusedReleases),
            ] where now > before {
                counter.increment(by: now - before)
            }
            previous = stats
        }
    }

    /// Records every `interval` until the task is cancelled; a failed measurement is logged and retried
    /// at the next interval.
    public func run(every interval: Duration, logger: Logger = Logger(label: "fiberstacks.metrics")) async {
        while !Task.isCancelled {
            do {
                try record()
            } catch {
                logger.error("recording stack allocator metrics failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }
}
