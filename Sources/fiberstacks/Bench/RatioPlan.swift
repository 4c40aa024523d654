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

    init(met: Bool) { self = met ? .met : .missed }

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
struct BenchRatio: Codable {
    let ours: String
    let versus: String
    let ratio: Double?
    let maxRatio: Double
    let target: String
    let status: TargetStatus
    var met: Bool { status == .met }

    enum CodingKeys: String, CodingKey {
        case ours, versus, ratio, target, status
        case maxRatio = "max_ratio"
    }
}

/// One of our figures against an absolute bound. `median` is absent when the figure was not measured.
struct BenchTargetCheck: Codable {
    let figure: String
    let median: Double?
    let unit: String?
    let maxMedian: Double
    let target: String
    let status: TargetStatus
    var met: Bool { status == .met }

    enum CodingKeys: String, CodingKey {
        case figure, median, unit, target, status
        case maxMedian = "max_median"
    }
}

/// The targets `bench` judges, as numbers: ratios of figures measured in one run (`maxRatio`: ours over
/// the other at most this), and absolute bounds on medians.
enum RatioPlan {
    struct Pair {
        let ours: FigureKey
        let versus: FigureKey
        let maxRatio: Double
        let target: String
        /// Compare time per byte (each median over its `page` parameter), for figures per page of
        /// different sizes.
        var perByte = false
    }

    struct Bound {
        let figure: FigureKey
        let maxMedian: Double
        let target: String
    }

    static let size64K = ["size": 64 << 10]

    static let pairs: [Pair] = [
        Pair(
            ours: FigureKey(.ours, "stack_alloc", "slab_cold_lightweight", size64K),
            versus: FigureKey(.peers, "stack_alloc", "boost_protected_fixedsize_stack", size64K), maxRatio: 1 / 1.5,
            target: "guarded stack allocate+release, cold: at least 1.5x faster than Boost protected_fixedsize_stack"),
        Pair(
            ours: FigureKey(.ours, "stack_alloc", "slab_cold_lightweight", size64K),
            versus: FigureKey(.peers, "stack_alloc", "mmap_mprotect", size64K), maxRatio: 1 / 1.5,
            target: "the same 1.5x bar against plain mmap + mprotect (64 KiB guard) + munmap in C"),
        Pair(
            ours: FigureKey(.ours, "stack_alloc", "mmap_lightweight", size64K),
            versus: FigureKey(.peers, "stack_alloc", "boost_protected_fixedsize_stack", size64K), maxRatio: 1 / 1.5,
            target: "the same 1.5x bar for one stack at a time (mmap + MADV_GUARD_INSTALL + munmap)"),
        Pair(
            ours: FigureKey(.ours, "stack_alloc", "mmap_mprotect", size64K),
            versus: FigureKey(.peers, "stack_alloc", "mmap_mprotect", size64K), maxRatio: 1.25,
            target: "our mmap + mprotect path within 1.25x of the same syscalls in C (a bar set here: the same syscalls should cost the same)"),
        Pair(
            ours: FigureKey(.ours, "pooled", "thread_cache", ["threads": 1]),
            versus: FigureKey(.peers, "stack_alloc", "boost_pooled_fixedsize_stack", size64K), maxRatio: 1,
            target: "no slower than Boost's unguarded pool (a bar set here)"),
        Pair(
            ours: FigureKey(.ours, "pooled", "thread_cache", ["threads": 1]),
            versus: FigureKey(.ours, "stack_alloc", "mmap_lightweight", size64K), maxRatio: 1 / 100,
            target: "pooled acquire+release at least 100x faster than the cold mmap path"),
        Pair(
            ours: FigureKey(.ours, "context_switch", "jump_raw"),
            versus: FigureKey(.peers, "context_switch", "boost_jump_fcontext"), maxRatio: 1.3,
            target: "context switch within 1.3x of Boost jump_fcontext"),
        Pair(
            ours: FigureKey(.ours, "context_switch", "switch_checked", ["stack": 64 << 10]),
            versus: FigureKey(.ours, "context_switch", "switch_scheduler_path", ["stack": 64 << 10]), maxRatio: 1.25,
            target: "the jumped-guard checks (top canary, running-stack slot) add at most 25% to a switch"),
        Pair(
            ours: FigureKey(.ours, "context_switch", "jump_raw"),
            versus: FigureKey(.peers, "context_switch", "ucontext_swapcontext"), maxRatio: 1 / 20,
            target: "context switch at least 20x faster than swapcontext"),
        Pair(
            ours: FigureKey(.ours, "tlb", "hugetlb_packed", ["stride": 4096]),
            versus: FigureKey(.ours, "tlb", "small_4k", ["stride": 4096]), maxRatio: 1 / 1.3,
            target: "huge-page stacks (hugetlb) at least 1.3x faster on the TLB-sensitive round-robin"),
        Pair(
            ours: FigureKey(.ours, "tlb", "thp_packed", ["stride": 4096]),
            versus: FigureKey(.ours, "tlb", "small_4k", ["stride": 4096]), maxRatio: 1 / 1.3,
            target: "huge-page stacks (THP) at least 1.3x faster on the TLB-sensitive round-robin"),
        Pair(
            ours: FigureKey(.ours, "prefault", "populate_4k"),
            versus: FigureKey(.peers, "prefault", "madv_populate_write_4k"), maxRatio: 1.25,
            target: "Prefault.apply(.populate) within 1.25x of MADV_POPULATE_WRITE in C (the same syscall)"),
        Pair(
            ours: FigureKey(.ours, "prefault", "touch_4k"),
            versus: FigureKey(.peers, "prefault", "touch_4k"), maxRatio: 1.25,
            target: "Prefault.apply(.touch) within 1.25x of a top-down touch loop in C"),
        // Allocation, prefault and slab targets.
        Pair(
            ours: FigureKey(.ours, "stack_alloc", "mmap_lightweight", size64K),
            versus: FigureKey(.ours, "stack_alloc", "mmap_mprotect", size64K), maxRatio: 0.75,
            target: "lightweight guard allocate+release at most 0.75x the mprotect path (64 KiB)"),
        Pair(
            ours: FigureKey(.ours, "prefault", "populate_4k"),
            versus: FigureKey(.ours, "prefault", "touch_4k"), maxRatio: 1 / 1.3,
            target: "populate at least 1.3x faster per page than touch"),
        Pair(
            ours: FigureKey(.ours, "prefault", "alloc_hugetlb_2m"),
            versus: FigureKey(.ours, "prefault", "alloc_populate_4k"), maxRatio: 1 / 3,
            target: "2 MiB hugetlb prefault at least 3x the 4 KiB rate (per byte)", perByte: true),
        Pair(
            ours: FigureKey(.ours, "stack_alloc", "slab_cold_lightweight", size64K),
            versus: FigureKey(.peers, "stack_alloc", "mmap_mprotect", size64K), maxRatio: 1 / 2,
            target: "slab carve of a cold stack at least 2x faster than mmap+mprotect+munmap"),
    ]

    static let bounds: [Bound] = [
        Bound(
            figure: FigureKey(.ours, "pooled", "thread_cache", ["threads": 1]), maxMedian: 25,
            target: "pooled acquire+release under 25 ns on one thread"),
        Bound(
            figure: FigureKey(.ours, "scheduler", "startup_lazy16"), maxMedian: 1000,
            target: "scheduler startup (2 workers x 16 x 512 KiB, first job done) under 1 ms median"),
        Bound(
            figure: FigureKey(.ours, "frames", "audit_loaded"), maxMedian: 50,
            target: "frame audit of every object loaded in fiberstacks under 50 ms (release build)"),
    ]

    /// Every ratio, judged where this run measured both figures.
    static func ratios(ours: [BenchResult], peers: [BenchResult]) -> [BenchRatio] {
        pairs.map { plan in
            guard let mine = plan.ours.find(ours: ours, peers: peers),
                let other = plan.versus.find(ours: ours, peers: peers), other.median > 0
            else {
                return BenchRatio(
                    ours: plan.ours.label, versus: plan.versus.label, ratio: nil, maxRatio: plan.maxRatio,
                    target: plan.target, status: .notEvaluated)
            }
            func cost(_ result: BenchResult) -> Double {
                plan.perByte ? result.median / Double(result.params["page"] ?? 1) : result.median
            }
            let ratio = cost(mine) / cost(other)
            return BenchRatio(
                ours: plan.ours.label, versus: plan.versus.label, ratio: ratio, maxRatio: plan.maxRatio,
                target: plan.target, status: TargetStatus(met: ratio <= plan.maxRatio))
        }
    }

    /// Every bound, judged where this run measured its figure.
    static func boundChecks(ours: [BenchResult]) -> [BenchTargetCheck] {
        bounds.map { plan in
            let figure = plan.figure.find(ours: ours, peers: [])
            return BenchTargetCheck(
                figure: plan.figure.label, median: figure?.median, unit: figure?.unit, maxMedian: plan.maxMedian,
                target: plan.target,
                status: figure.map { TargetStatus(met: $0.median <= plan.maxMedian) } ?? .notEvaluated)
        }
    }
}
