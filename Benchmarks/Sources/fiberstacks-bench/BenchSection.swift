import ArgumentParser
@_spi(Benchmarks) import GuardPages
import StackAllocators

/// The sections of `fiberstacks bench`, in the order they run; the raw values are the JSON `section` values.
enum BenchSection: String, CaseIterable, Codable, ExpressibleByArgument {
    /// Stack allocate+release: mmap per guard kind and size, slab cold carve and reuse, huge-page regions.
    case stackAlloc = "stack_alloc"
    /// Pooled acquire+release: one thread, two threads on one pool, the depot, scrub and discard.
    case pooled
    /// Prefault ns/page and GB/s per strategy and page size.
    case prefault
    /// The raw context switch and the scheduler's yield.
    case contextSwitch = "context_switch"
    /// Scheduler startup, empty jobs, fan-out and parallelFor, next to Swift concurrency, Dispatch and
    /// Boost.Fiber.
    case scheduler
    /// A million jobs suspended at once on guarded slab stacks: time, memory, and memory given back.
    case suspended
    /// A TLB-sensitive round-robin over many stacks, small pages against huge pages.
    case tlb
    /// NUMA bind + prefault against prefault alone, mbind, placement verification.
    case numa
    /// The most live guarded stacks one process holds within a time bound.
    case capacity
    /// The frame audit of every object loaded in this process.
    case frames

    /// What the section is about to measure, for the progress line on standard error.
    func progressDetail(_ recorder: BenchRecorder) -> String {
        switch self {
        case .stackAlloc: "(allocate+release: mmap per guard kind and size, slab, huge-page regions)"
        case .pooled: "(pooled acquire+release: one thread, two threads, the depot)"
        case .prefault: "(per strategy and page size)"
        case .contextSwitch: "(the raw switch, the checks a fiber's resume adds, and the scheduler's yield)"
        case .scheduler: "(startup, empty jobs, fan-out, parallelFor; Swift concurrency, Dispatch, Boost.Fiber)"
        case .suspended: "(\(recorder.suspendedJobs) jobs suspended at once, 2 workers, 64 KiB guarded slab stacks)"
        case .tlb: "(round-robin over many stacks, small pages against huge pages)"
        case .numa: "(bind + prefault, mbind, placement verification)"
        case .frames: "(auditing the stack frames of every object loaded in this process)"
        case .capacity:
            "(" + (recorder.scale.quick ? "" : "\(CapacityBenchmarks.runs) runs, each ") + "up to \(recorder.capacityStacks) "
                + "live guarded stacks or \(format(recorder.capacitySeconds)) s, whichever comes first; each followed by "
                + "peer c_slab_syscalls, C doing the same syscalls)"
        }
    }

    /// Runs this section's benchmarks into `recorder`.
    func run(_ recorder: BenchRecorder) throws {
        switch self {
        case .stackAlloc: try StackAllocBenchmarks.run(recorder)
        case .pooled: try PoolBenchmarks.run(recorder)
        case .prefault: try PrefaultBenchmarks.run(recorder)
        case .contextSwitch: try ContextSwitchBenchmarks.run(recorder)
        case .scheduler: try SchedulerBenchmarks.run(recorder)
        case .suspended: try SuspendedBenchmarks.run(recorder)
        case .tlb: try TLBBenchmarks.run(recorder)
        case .numa: try NUMABenchmarks.run(recorder)
        case .capacity: try CapacityBenchmarks.run(recorder)
        case .frames: try FrameAuditBenchmarks.run(recorder)
        }
    }
}

/// A figure, or a whole section, that did not run on this machine, and why.
struct BenchSkip: Codable {
    let section: String
    let name: String
    let reason: String
}

/// What a run measured and what it skipped, section by section.
final class BenchRecorder {
    /// Repetitions and operation counts.
    let scale: BenchScale
    /// The capacity section's bounds: most stacks, and seconds.
    let capacityLimit: Int
    let capacitySeconds: Double
    /// The most stacks the capacity section makes: the limit, or 1,000 under `--quick`.
    var capacityStacks: Int { scale.quick ? min(capacityLimit, 1_000) : capacityLimit }
    /// Jobs the suspended section suspends at once: a million, or 1,000 under `--quick`.
    var suspendedJobs: Int { scale.quick ? 1_000 : 1_000_000 }
    private(set) var results: [BenchResult] = []
    /// The peers' figures, measured alternating with ours.
    private(set) var peerResults: [BenchResult] = []
    private(set) var skipped: [BenchSkip] = []

    init(scale: BenchScale, capacityLimit: Int, capacitySeconds: Double) {
        self.scale = scale
        self.capacityLimit = capacityLimit
        self.capacitySeconds = capacitySeconds
    }

    /// Records measured figures.
    func add(_ figures: BenchResult...) { results += figures }

    /// Records measured figures.
    func add(_ figures: [BenchResult]) { results += figures }

    /// Records a peer's figure.
    func addPeer(_ figure: BenchResult) { peerResults.append(figure) }

    /// Says on standard error what runs next, so a long run is never silent.
    func progress(_ text: String) { FileStream.standardError.write("bench:   \(text)\n") }

    /// Records that `name` (or `"*"`: the whole section) did not run, and why.
    func skip(_ section: BenchSection, _ name: String, because reason: String) {
        skipped.append(BenchSkip(section: section.rawValue, name: name, reason: reason))
    }

    /// Runs `body`, which measures the figures called `name`; where it fails because the machine lacks a
    /// capability (huge pages, a hugetlbfs mount, THP, a NUMA node), records a skip with the error's
    /// cause and fix instead. Any other failure propagates: a benchmark that breaks must not look skipped.
    func figure(_ section: BenchSection, _ name: String, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as StackError where error.meansMissingCapability {
            skip(section, name, because: error.description)
        } catch let error as PerfCounter.Unavailable {
            skip(section, name, because: error.description)
        }
    }
}

extension StackError {
    /// Whether the error says the machine lacks something a figure needs, rather than that it failed.
    var meansMissingCapability: Bool { isUnsupported || code == .resourceExhausted }
}
