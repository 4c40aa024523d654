/// A figure of a run: ours or the peer harness's, by section, name and the params it must have.
struct FigureKey {
    /// Who measured it.
    enum Source: String {
        case ours, peers
    }

    let source: Source
    let section: String
    let name: String
    let params: [String: Int]

    init(_ source: Source, _ section: String, _ name: String, _ params: [String: Int] = [:]) {
        self.source = source
        self.section = section
        self.name = name
        self.params = params
    }

    /// The first result of `source` with this section and name whose params include `params`.
    func find(ours: [BenchResult], peers: [BenchResult]) -> BenchResult? {
        (source == .ours ? ours : peers).first { result in
            result.section == section && result.name == name && params.allSatisfy { result.params[$0.key] == $0.value }
        }
    }

    /// "peers:stack_alloc/boost_protected_fixedsize_stack size=64K".
    var label: String {
        let parameters = params.sorted { $0.key < $1.key }.map { "\($0.key)=\(formatParameter($0.value))" }
        return (["\(source.rawValue):\(section)/\(name)"] + parameters).joined(separator: " ")
    }
}

/// Whether a target was met, missed, or not evaluated because this run did not measure a figure it needs
/// (`bench --check` counts that as missed).
enum TargetStatus: String, Codable {
    case met, missed
    case notEvaluated = "not_evaluated"

    /// Met when `figure` is at most `bound`. Bars written as fractions (`1 / 1.3`) are rounded, and so is
    /// a ratio of medians: a figure equal to its bar within that rounding meets it (13 ns against 10 ns
    /// is 1.3x faster, though `10 / 13` rounds one unit above `1 / 1.3`).
    init(_ figure: Double, atMost bound: Double) {
        self = figure <= bound * (1 + Self.rounding) ? .met : .missed
    }

    /// The relative difference a comparison with a bar forgives: far above the rounding of a few
    /// divisions (1e-16 each), far below any difference a benchmark can resolve.
    static let rounding = 1e-9

    /// The first column of the text report.
    var marker: String {
        switch self {
        case .met: "met    "
        case .missed: "MISSED "
        case .notEvaluated: "NOT RUN"
        }
    }
}

/// One of our figures over another (a peer's, or ours as a baseline) from the same run, and whether it
/// met its target: below 1 means ours is faster. `ratio` is absent when a figure was not measured.
struct BenchRatio: Encodable {
    /// A stable name for the target ("switch_vs_boost").
    let id: String
    let ours: String
    let versus: String
    let ratio: Double?
    let maxRatio: Double
    let target: String
    let status: TargetStatus
    /// Whether `status` is `met`, for readers of the JSON that want a boolean.
    let met: Bool

    enum CodingKeys: String, CodingKey {
        case id, ours, versus, ratio, target, status, met
        case maxRatio = "max_ratio"
    }
}

/// One of our figures against an absolute bound: its median, or one of its `extra` values (`metric`).
/// `value` is absent when the figure was not measured.
struct BenchTargetCheck: Encodable {
    /// A stable name for the target ("empty_job").
    let id: String
    let figure: String
    /// "median", or the `extra` key the bound applies to.
    let metric: String
    let value: Double?
    let unit: String?
    let maxValue: Double
    let target: String
    let status: TargetStatus
    /// Whether `status` is `met`, for readers of the JSON that want a boolean.
    let met: Bool

    enum CodingKeys: String, CodingKey {
        case id, figure, metric, value, unit, target, status, met
        case maxValue = "max_value"
    }
}

/// The targets `bench` judges, as numbers: ratios of figures measured in one run (`maxRatio`: ours over
/// the other at most this), and absolute bounds on medians.
enum RatioPlan {
    struct Pair {
        let id: String
        let ours: FigureKey
        let versus: FigureKey
        let maxRatio: Double
        let target: String
        /// Compare time per byte (each median over its `page` parameter), for figures per page of
        /// different sizes.
        var perByte = false
        /// Nil: the medians; otherwise the `extra` value with this key on both sides.
        var metric: String?
    }

    struct Bound {
        let id: String
        let figure: FigureKey
        /// Nil: the median; otherwise the `extra` value with this key.
        var metric: String?
        let maxValue: Double
        let target: String
    }

    static let size64K = ["size": 64 << 10]

    static let pairs: [Pair] = [
        Pair(
            id: "slab_cold_vs_boost", ours: FigureKey(.ours, "stack_alloc", "slab_cold_lightweight", size64K),
            versus: FigureKey(.peers, "stack_alloc", "boost_protected_fixedsize_stack", size64K), maxRatio: 1 / 1.5,
            target: "guarded stack allocate+release, cold: at least 1.5x faster than Boost protected_fixedsize_stack"),
        Pair(
            id: "slab_cold_vs_c_mprotect", ours: FigureKey(.ours, "stack_alloc", "slab_cold_lightweight", size64K),
            versus: FigureKey(.peers, "stack_alloc", "mmap_mprotect", size64K), maxRatio: 1 / 1.5,
            target: "the same 1.5x bar against plain mmap + mprotect (64 KiB guard) + munmap in C"),
        Pair(
            id: "slab_cold_2x_vs_c", ours: FigureKey(.ours, "stack_alloc", "slab_cold_lightweight", size64K),
            versus: FigureKey(.peers, "stack_alloc", "mmap_mprotect", size64K), maxRatio: 1 / 2,
            target: "slab carve of a cold stack at least 2x faster than mmap+mprotect+munmap"),
        Pair(
            id: "single_stack_vs_boost", ours: FigureKey(.ours, "stack_alloc", "mmap_lightweight", size64K),
            versus: FigureKey(.peers, "stack_alloc", "boost_protected_fixedsize_stack", size64K), maxRatio: 1 / 1.5,
            target: "the same 1.5x bar for one stack at a time (mmap + MADV_GUARD_INSTALL + munmap)"),
        Pair(
            id: "single_stack_vs_c", ours: FigureKey(.ours, "stack_alloc", "mmap_lightweight", size64K),
            versus: FigureKey(.peers, "stack_alloc", "mmap_guard_install", size64K), maxRatio: 1.1,
            target: "one stack at a time, lightweight guard: within 1.1x of C doing the same syscalls"),
        Pair(
            id: "mprotect_path_vs_c", ours: FigureKey(.ours, "stack_alloc", "mmap_mprotect", size64K),
            versus: FigureKey(.peers, "stack_alloc", "mmap_mprotect", size64K), maxRatio: 1.25,
            target: "our mmap + mprotect path within 1.25x of the same syscalls in C"),
        Pair(
            id: "lightweight_vs_mprotect", ours: FigureKey(.ours, "stack_alloc", "mmap_lightweight_used", size64K),
            versus: FigureKey(.ours, "stack_alloc", "mmap_mprotect_used", size64K), maxRatio: 1,
            target: "lightweight guard allocate+use+release no slower than the mprotect path (64 KiB, top word written)"),
        Pair(
            id: "single_stack_used_vs_c", ours: FigureKey(.ours, "stack_alloc", "mmap_lightweight_used", size64K),
            versus: FigureKey(.peers, "stack_alloc", "mmap_guard_install_used", size64K), maxRatio: 1.1,
            target: "the same, used: within 1.1x of C doing the same syscalls and the same write"),
        Pair(
            id: "pooled_vs_boost_pool", ours: FigureKey(.ours, "pooled", "thread_cache", ["threads": 1]),
            versus: FigureKey(.peers, "pooled", "boost_pooled_fixedsize_stack"), maxRatio: 1,
            target: "pooled acquire+release no slower than Boost's unguarded pooled_fixedsize_stack"),
        Pair(
            id: "pooled_two_threads", ours: FigureKey(.ours, "pooled", "thread_cache", ["threads": 2]),
            versus: FigureKey(.ours, "pooled", "thread_cache", ["threads": 1]), maxRatio: 1.2,
            target: "pooled acquire+release on 2 threads at once at most 1.2x the 1-thread figure"),
        Pair(
            id: "pooled_vs_cold_mmap", ours: FigureKey(.ours, "pooled", "thread_cache", ["threads": 1]),
            versus: FigureKey(.ours, "stack_alloc", "mmap_lightweight", size64K), maxRatio: 1 / 100,
            target: "pooled acquire+release at least 100x faster than the cold mmap path"),
        Pair(
            id: "switch_vs_boost", ours: FigureKey(.ours, "context_switch", "jump_raw"),
            versus: FigureKey(.peers, "context_switch", "boost_jump_fcontext"), maxRatio: 1,
            target: "context switch no slower than Boost jump_fcontext"),
        Pair(
            id: "switch_checked", ours: FigureKey(.ours, "context_switch", "switch_checked", ["stack": 64 << 10]),
            versus: FigureKey(.ours, "context_switch", "switch_scheduler_path", ["stack": 64 << 10]), maxRatio: 1.25,
            target: "the jumped-guard checks (top canary, running-stack slot) add at most 25% to a switch"),
        Pair(
            id: "switch_vs_swapcontext", ours: FigureKey(.ours, "context_switch", "jump_raw"),
            versus: FigureKey(.peers, "context_switch", "ucontext_swapcontext"), maxRatio: 1 / 20,
            target: "context switch at least 20x faster than swapcontext"),
        Pair(
            id: "fan_out_vs_taskgroup", ours: FigureKey(.ours, "scheduler", "fan_out"),
            versus: FigureKey(.peers, "scheduler", "taskgroup_fan_out"), maxRatio: 1,
            target: "10,000 individually submitted empty jobs faster than withTaskGroup children"),
        Pair(
            id: "fan_out_vs_dispatch", ours: FigureKey(.ours, "scheduler", "fan_out"),
            versus: FigureKey(.peers, "scheduler", "dispatch_fan_out"), maxRatio: 1,
            target: "10,000 individually submitted empty jobs faster than Dispatch blocks"),
        Pair(
            id: "fan_out_vs_boost_fiber", ours: FigureKey(.ours, "scheduler", "fan_out"),
            versus: FigureKey(.peers, "scheduler", "boost_fiber_fan_out"), maxRatio: 1,
            target: "10,000 individually submitted empty jobs faster than Boost.Fiber fibers (work_stealing, 2 threads)"),
        Pair(
            id: "parallel_for_vs_concurrent_perform_10k", ours: FigureKey(.ours, "scheduler", "parallel_for", ["iterations": 10_000]),
            versus: FigureKey(.peers, "scheduler", "concurrent_perform", ["iterations": 10_000]), maxRatio: 1,
            target: "parallelFor over 10,000 iterations no slower than DispatchQueue.concurrentPerform"),
        Pair(
            id: "parallel_for_vs_concurrent_perform_1m", ours: FigureKey(.ours, "scheduler", "parallel_for", ["iterations": 1_000_000]),
            versus: FigureKey(.peers, "scheduler", "concurrent_perform", ["iterations": 1_000_000]), maxRatio: 1,
            target: "parallelFor over 1,000,000 iterations no slower than DispatchQueue.concurrentPerform"),
        Pair(
            id: "suspended_vs_go", ours: FigureKey(.ours, "suspended", "suspended_jobs"),
            versus: FigureKey(.peers, "suspended", "go_goroutines"), maxRatio: 1.5,
            target: "jobs suspended at once (suspend_s) within 1.5x of as many goroutines blocked on a channel (Go, GOMAXPROCS=2)"),
        Pair(
            id: "tlb_hugetlb", ours: FigureKey(.ours, "tlb", "hugetlb_packed", ["stride": 4096]),
            versus: FigureKey(.ours, "tlb", "small_4k", ["stride": 4096]), maxRatio: 1 / 1.3,
            target: "huge-page stacks (hugetlb) at least 1.3x faster on the TLB-sensitive round-robin"),
        Pair(
            id: "tlb_thp", ours: FigureKey(.ours, "tlb", "thp_packed", ["stride": 4096]),
            versus: FigureKey(.ours, "tlb", "small_4k", ["stride": 4096]), maxRatio: 1 / 1.3,
            target: "huge-page stacks (THP) at least 1.3x faster on the TLB-sensitive round-robin"),
        Pair(
            id: "tlb_hugetlb_vs_small_packed", ours: FigureKey(.ours, "tlb", "hugetlb_packed", ["stride": 4096]),
            versus: FigureKey(.ours, "tlb", "small_packed", ["stride": 4096]), maxRatio: 1 / 1.3,
            target: "the same bar against small-page stacks packed the same way (only the page size differs)"),
        Pair(
            id: "populate_vs_c", ours: FigureKey(.ours, "prefault", "populate_4k"),
            versus: FigureKey(.peers, "prefault", "madv_populate_write_4k"), maxRatio: 1.25,
            target: "Prefault.apply(.populate) within 1.25x of MADV_POPULATE_WRITE in C (the same syscall)"),
        Pair(
            id: "touch_vs_c", ours: FigureKey(.ours, "prefault", "touch_4k"),
            versus: FigureKey(.peers, "prefault", "touch_4k"), maxRatio: 1.25,
            target: "Prefault.apply(.touch) within 1.25x of a top-down touch loop in C"),
        Pair(
            id: "populate_vs_touch", ours: FigureKey(.ours, "prefault", "populate_4k"),
            versus: FigureKey(.ours, "prefault", "touch_4k"), maxRatio: 1 / 1.3,
            target: "populate at least 1.3x faster per page than touch"),
        Pair(
            id: "hugetlb_prefault_rate", ours: FigureKey(.ours, "prefault", "alloc_hugetlb_2m"),
            versus: FigureKey(.ours, "prefault", "alloc_populate_4k"), maxRatio: 1 / 3,
            target: "2 MiB hugetlb prefault at least 3x the 4 KiB rate (per byte)", perByte: true),
        Pair(
            id: "hugetlb_prefault_vs_c", ours: FigureKey(.ours, "prefault", "alloc_hugetlb_2m_contest"),
            versus: FigureKey(.peers, "prefault", "mmap_hugetlb_populate"), maxRatio: 1.1,
            target: "a populated 2 MiB hugetlb stack within 1.1x of mmap(MAP_HUGETLB) + MADV_POPULATE_WRITE in C"),
        Pair(
            id: "capacity_create_vs_c", ours: FigureKey(.ours, "capacity", "slab_guarded_stacks"),
            versus: FigureKey(.peers, "capacity", "c_slab_syscalls"), maxRatio: 1.25,
            target: "as many live guarded slab stacks created within 1.25x of C doing the slab's syscalls",
            metric: "create_s_per_million"),
        Pair(
            id: "capacity_release_vs_c", ours: FigureKey(.ours, "capacity", "slab_guarded_stacks"),
            versus: FigureKey(.peers, "capacity", "c_slab_syscalls"), maxRatio: 1.25,
            target: "and released within 1.25x of C doing the same", metric: "release_s_per_million"),
    ]

    static let bounds: [Bound] = [
        Bound(
            id: "pooled_acquire_release", figure: FigureKey(.ours, "pooled", "thread_cache", ["threads": 1]),
            maxValue: 10, target: "pooled acquire+release at most 10 ns on one thread"),
        Bound(
            id: "scheduler_startup", figure: FigureKey(.ours, "scheduler", "startup_lazy16"), maxValue: 300,
            target: "scheduler startup (2 workers x 16 x 512 KiB, creation to first job done) at most 300 µs"),
        Bound(
            id: "empty_job", figure: FigureKey(.ours, "scheduler", "empty_jobs"), maxValue: 100,
            target: "an empty job at most 100 ns (2 workers)"),
        Bound(
            id: "suspended_million_suspend", figure: FigureKey(.ours, "suspended", "suspended_jobs"), metric: "suspend_s",
            maxValue: 3, target: "1,000,000 jobs suspended at once within 3 s"),
        Bound(
            id: "suspended_million_resume", figure: FigureKey(.ours, "suspended", "suspended_jobs"), metric: "resume_s",
            maxValue: 0.4, target: "all of them done within 0.4 s of the release"),
        Bound(
            id: "suspended_million_rss", figure: FigureKey(.ours, "suspended", "suspended_jobs"),
            metric: "rss_per_fiber_bytes", maxValue: 4.5 * 1024, target: "at most 4.5 KiB RSS per suspended fiber"),
        Bound(
            id: "suspended_million_rss_after", figure: FigureKey(.ours, "suspended", "suspended_jobs"),
            metric: "rss_after_ratio", maxValue: 1.1, target: "RSS back within 10% of the start after shutdown"),
        Bound(
            id: "capacity_create", figure: FigureKey(.ours, "capacity", "slab_guarded_stacks"),
            metric: "create_s_per_million", maxValue: 1, target: "1,000,000 live guarded stacks created in at most 1.0 s"),
        Bound(
            id: "capacity_release", figure: FigureKey(.ours, "capacity", "slab_guarded_stacks"),
            metric: "release_s_per_million", maxValue: 0.5, target: "and released in at most 0.5 s"),
        Bound(
            id: "frame_audit", figure: FigureKey(.ours, "frames", "audit_loaded"), maxValue: 50,
            target: "frame audit of every object loaded in fiberstacks-bench at most 50 ms (release build)"),
    ]

    /// Every ratio, judged where this run measured both figures.
    static func ratios(ours: [BenchResult], peers: [BenchResult]) -> [BenchRatio] {
        pairs.map { plan in
            func cost(_ figure: FigureKey) -> Double? {
                guard let result = figure.find(ours: ours, peers: peers) else { return nil }
                if let metric = plan.metric { return result.extra?[metric] }
                return plan.perByte ? result.median / Double(result.params["page"] ?? 1) : result.median
            }
            guard let mine = cost(plan.ours), let other = cost(plan.versus), other > 0 else {
                return BenchRatio(
                    id: plan.id, ours: plan.ours.label, versus: plan.versus.label, ratio: nil, maxRatio: plan.maxRatio,
                    target: plan.target, status: .notEvaluated, met: false)
            }
            let ratio = mine / other
            let status = TargetStatus(ratio, atMost: plan.maxRatio)
            return BenchRatio(
                id: plan.id, ours: plan.ours.label, versus: plan.versus.label, ratio: ratio, maxRatio: plan.maxRatio,
                target: plan.target, status: status, met: status == .met)
        }
    }

    /// Every bound, judged where this run measured its figure.
    static func boundChecks(ours: [BenchResult]) -> [BenchTargetCheck] {
        bounds.map { plan in
            let figure = plan.figure.find(ours: ours, peers: [])
            let value = plan.metric.map { figure?.extra?[$0] } ?? figure?.median
            let status = value.map { TargetStatus($0, atMost: plan.maxValue) } ?? .notEvaluated
            return BenchTargetCheck(
                id: plan.id, figure: plan.figure.label, metric: plan.metric ?? "median", value: value,
                unit: plan.metric == nil ? figure?.unit : nil, maxValue: plan.maxValue, target: plan.target,
                status: status, met: status == .met)
        }
    }
}
