import CPeers
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackAllocators

/// `capacity`: the most live guarded stacks one process holds, with the slab (64 KiB stacks, 64 KiB
/// guards of the default kind), up to `--capacity-limit` stacks or `--capacity-seconds`, whichever
/// comes first, or until the kernel refuses (then `extra.stopped_by_error` is 1, the error goes to
/// standard error and no further run starts). Measured `runs` times (1 under `--quick`), each with a
/// new slab: the median is µs per stack created, and the targets read the medians over the runs.
///
/// `extra`: `stacks`, `create_s`, `release_s` (all of them, then `trim()`), their medians per million
/// (`create_s_per_million`, `release_s_per_million`) with the slowest and fastest run
/// (`..._max`, `..._min`), and from the first run: `map_lines_added` (with all live),
/// `page_table_bytes` (VmPTE growth: a lightweight guard is a page-table marker), `rss_bytes` (VmRSS
/// growth, which includes the benchmark's own array of `Stack` values, touched before the clock starts),
/// both also per stack (`page_table_bytes_per_stack`, `rss_bytes_per_stack`), `reserved_bytes`
/// (address space the slab reserved), `limit`, `time_bound_s`, `time_bound_hit`, `runs`.
///
/// The peer `c_slab_syscalls` follows each run with as many stacks: C doing the slab's syscalls with its
/// geometry and none of its bookkeeping (`fs_peer_capacity`), so each run shows what the kernel alone
/// costs. Its `extra` has the same per-million medians. Lightweight guards only: where the kernel lacks
/// them the peer is a skip.
enum CapacityBenchmarks {
    /// Runs per benchmark: one would make a target of a single sample.
    static let runs = 3

    static func run(_ recorder: BenchRecorder) throws {
        var measured: [Run] = []
        var reference: [Timing] = []
        let peerSkip = GuardInstaller.lightweightGuardsSupported
            ? nil : "the C reference installs lightweight guards: \(GuardInstaller.lightweightGuards.missing ?? "refused")"
        for _ in 0..<recorder.scale.ops(runs, quick: 1) {
            let run = try measure(recorder)
            measured.append(run)
            if run.stoppedByError { break }
            if peerSkip == nil { reference.append(try measureInC(count: run.count)) }
        }
        let first = measured[0]
        let ours = perMillion(measured.map { Timing(create: $0.create, release: $0.release, count: $0.count) })
        recorder.add(BenchResult(
            section: .capacity, name: "slab_guarded_stacks",
            params: ["size": first.request.usableSize, "guard": first.request.guardSize], unit: "us",
            samples: ours.create, opsPerRep: first.count,
            extra: ours.extra.merging([
                "stacks": Double(first.count), "create_s": Double(first.create) / 1e9, "release_s": Double(first.release) / 1e9,
                "map_lines_added": Double(first.mapLines), "page_table_bytes": Double(first.pageTableBytes),
                "page_table_bytes_per_stack": Double(first.pageTableBytes) / Double(first.count),
                "rss_bytes_per_stack": Double(first.rssBytes) / Double(first.count),
                "rss_bytes": Double(first.rssBytes), "reserved_bytes": Double(first.reserved),
                "limit": Double(recorder.capacityStacks), "time_bound_s": recorder.capacitySeconds,
                "time_bound_hit": measured.contains { $0.timeBoundHit } ? 1 : 0,
                "stopped_by_error": measured.contains { $0.stoppedByError } ? 1 : 0,
            ]) { mine, _ in mine }))
        if let peerSkip {
            recorder.skip(.capacity, "c_slab_syscalls", because: peerSkip)
        } else if !reference.isEmpty {
            let theirs = perMillion(reference)
            recorder.addPeer(BenchResult(
                section: .capacity, name: "c_slab_syscalls",
                params: ["size": first.request.usableSize, "guard": first.request.guardSize], unit: "us",
                samples: theirs.create, opsPerRep: reference[0].count, extra: theirs.extra))
        }
    }

    /// Nanoseconds to create `count` stacks and to release them, in one run.
    private struct Timing {
        let create: UInt64
        let release: UInt64
        let count: Int
    }

    /// Seconds per million stacks (also µs per stack) to create, one sample per run, and the `extra`
    /// values the targets read: the medians to create and to release, the fastest and slowest run, `runs`.
    private static func perMillion(_ runs: [Timing]) -> (create: [Double], extra: [String: Double]) {
        let create = runs.map { Double($0.create) / Double($0.count) / 1e3 }
        let release = runs.map { Double($0.release) / Double($0.count) / 1e3 }
        return (create, [
            "create_s_per_million": BenchResult.median(create),
            "create_s_per_million_min": create.min()!, "create_s_per_million_max": create.max()!,
            "release_s_per_million": BenchResult.median(release),
            "release_s_per_million_min": release.min()!, "release_s_per_million_max": release.max()!,
            "runs": Double(runs.count),
        ])
    }

    /// `fs_peer_capacity` for `count` stacks with the default slab's geometry: nanoseconds to create and
    /// to release them.
    private static func measureInC(count: Int) throws -> Timing {
        let slab = SlabStackAllocator.Configuration()
        var release: Int64 = 0
        let create = try peerNanoseconds("c_slab_syscalls") {
            fs_peer_capacity(
                count, slab.usableSize, slab.guardSize, slab.stacksPerRegion, SlabStackAllocator.guardWindow,
                slab.discardBatch, StackLayout.mappingFlags, &release)
        }
        return Timing(create: UInt64(create), release: UInt64(release), count: count)
    }

    /// One run: stacks created until the limit, the time bound or an error, then all released.
    private struct Run {
        let request: StackRequest
        let count: Int
        /// Nanoseconds.
        let create: UInt64
        let release: UInt64
        let mapLines: Int
        let pageTableBytes: Int
        let rssBytes: Int
        let reserved: Int
        let timeBoundHit: Bool
        let stoppedByError: Bool
    }

    private static func measure(_ recorder: BenchRecorder) throws -> Run {
        let limit = recorder.capacityStacks
        let slab = try SlabStackAllocator(logger: benchLogger)
        let request = StackRequest(usableSize: 64 << 10)
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: limit)
        defer { storage.deallocate() }
        let mapsBefore = try MapCount.current()
        let (rssBefore, pteBefore) = (try SystemFile.processStatusBytes("VmRSS"), try SystemFile.processStatusBytes("VmPTE"))
        // Faulted in before the clock starts: its page faults are the benchmark's, not the slab's.
        UnsafeMutableRawPointer(storage).initializeMemory(as: UInt8.self, repeating: 0, count: limit * MemoryLayout<Stack>.stride)
        var count = 0
        var stoppedByError = false
        let deadline = nanoseconds() + UInt64(recorder.capacitySeconds * 1e9)
        let start = nanoseconds()
        while count < limit {
            if count % 1_024 == 0, nanoseconds() > deadline { break }
            do {
                (storage + count).initialize(to: try slab.allocate(request))
            } catch {
                FileStream.standardError.write("bench: capacity stopped at \(count) stacks: \(error)\n")
                stoppedByError = true
                break
            }
            count += 1
        }
        let create = nanoseconds() - start
        let mapsLive = try MapCount.current()
        let (rssLive, pteLive) = (try SystemFile.processStatusBytes("VmRSS"), try SystemFile.processStatusBytes("VmPTE"))
        let reserved = slab.stats.bytesReserved
        let releaseStart = nanoseconds()
        storage.deinitialize(count: count)
        _ = slab.trim()
        let release = nanoseconds() - releaseStart
        guard count > 0 else { throw BenchFailure("capacity: not one stack could be allocated") }
        return Run(
            request: request, count: count, create: create, release: release, mapLines: mapsLive - mapsBefore,
            pageTableBytes: pteLive - pteBefore, rssBytes: rssLive - rssBefore, reserved: reserved,
            timeBoundHit: count < limit && !stoppedByError, stoppedByError: stoppedByError)
    }
}
