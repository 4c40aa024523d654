import ArgumentParser
import CStackSupport
import Glibc
import Logging
import StackAllocators

/// `fiberstacks bench-huge` (hidden; run it in release): prefault throughput of 4 KiB pages against
/// 2 MiB hugetlb and transparent huge pages, and a TLB-sensitive round-robin over many stacks, on small
/// pages against huge-page stacks. Prints a Markdown table for docs/benchmarks.md.
struct BenchHuge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-huge", abstract: "Benchmark huge-page stacks (prefault GB/s, TLB-sensitive round-robin).",
        shouldDisplay: false)

    @Option(name: .customLong("prefault-mib"), help: "MiB per stack in the prefault benchmark (hugetlb takes that much from the pool).")
    var prefaultMiB = 32
    @Option(help: "Runs per measurement; the best and the median are reported.")
    var repeats = 7
    @Option(help: "Stacks in the round-robin.")
    var stacks = 4096
    @Option(name: .customLong("touch-kib"), help: "KiB touched at the top of each stack per visit (also the stack size).")
    var touchKiB = 16
    @Option(help: "Timed rounds of the round-robin.")
    var rounds = 20

    func validate() throws {
        guard prefaultMiB > 0, prefaultMiB <= 1024, repeats > 0, stacks > 0, touchKiB > 0, touchKiB <= 1024, rounds > 0 else {
            throw ValidationError("sizes and counts must be positive (prefault-mib, touch-kib at most 1024)")
        }
    }

    func run() throws {
        let quiet = Logger(label: "fiberstacks.bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let huge = HugePageStackAllocator(logger: quiet)
        let small = try MmapStackAllocator(logger: quiet)
        print("machine: kernel \(kernelRelease), THP \(MachineCapabilities.transparentHugePageMode() ?? "absent"), "
            + "dTLB counters: \(dtlbCounterAvailability())\n")

        print("Prefault throughput, \(prefaultMiB) MiB stack, best and median of \(repeats) (allocate = map + guard + prefault):\n")
        print("| pages | prefault | GB/s best | GB/s median | ms per stack (median) | in huge pages |")
        print("|---|---|---:|---:|---:|---:|")
        let bytes = prefaultMiB << 20
        let populate = PrefaultPolicy(.populate)
        let prefaultCases: [(String, String, any StackAllocator, StackRequest)] = [
            ("4 KiB", "MADV_POPULATE_WRITE", small, StackRequest(usableSize: bytes, prefault: populate)),
            ("4 KiB", "touch, top down", small, StackRequest(usableSize: bytes, prefault: PrefaultPolicy(.touch))),
            ("2 MiB hugetlb (anonymous)", "MADV_POPULATE_WRITE", huge, hugeRequest(.anonymous, bytes)),
            ("2 MiB hugetlbfs", "MADV_POPULATE_WRITE", huge, hugeRequest(.hugetlbfs(), bytes)),
            ("2 MiB THP", "MADV_POPULATE_WRITE", huge, hugeRequest(.transparent, bytes, prefault: populate)),
        ]
        for (pages, method, allocator, request) in prefaultCases {
            do {
                var hugeBytes = 0
                let seconds = try Timing((0..<repeats).map { _ throws(StackError) in
                    let start = ContinuousClock.now
                    let stack = try allocator.allocate(request)
                    let elapsed = ContinuousClock.now - start
                    hugeBytes = try HugePageStackAllocator.hugePageBytes(of: stack)
                    return elapsed.seconds
                })
                print("| \(pages) | \(method) | \(format(Double(bytes) / seconds.best / 1e9)) | "
                    + "\(format(Double(bytes) / seconds.median / 1e9)) | \(format(seconds.median * 1e3)) | \(hugeBytes * 100 / bytes)% |")
            } catch {
                print("| \(pages) | \(method) | skipped: \(error) | | | |")
            }
        }

        print("\nRound-robin over \(stacks) stacks of \(touchKiB) KiB, each visit writing its top \(touchKiB) KiB, "
            + "µs per round, best / median of \(rounds):\n")
        print("| stacks | guard | one line per 4 KiB | every 64 B line | speedup vs 4 KiB, best (per 4 KiB / per line) | dTLB read misses per round |")
        print("|---|---|---:|---:|---:|---:|")
        let usable = touchKiB << 10
        let roundRobinCases: [(String, any StackAllocator, StackRequest)] = [
            ("4 KiB pages (MmapStackAllocator)", small, StackRequest(usableSize: usable)),
            ("2 MiB hugetlb, packed", huge, hugeRequest(.anonymous, usable, packing: .packed)),
            ("2 MiB THP, packed", huge, hugeRequest(.transparent, usable, packing: .packed)),
        ]
        var baseline: (Timing, Timing)?
        for (name, allocator, request) in roundRobinCases {
            do {
                let (sparse, dense, misses, guardKind) = try roundRobin(allocator, request)
                let ratio = baseline.map { "\(format($0.0.best / sparse.best))x / \(format($0.1.best / dense.best))x" } ?? "1x / 1x"
                if baseline == nil { baseline = (sparse, dense) }
                print("| \(name) | \(guardKind) | \(sparse.microseconds) | \(dense.microseconds) | \(ratio) | "
                    + "\(misses.map { String($0) } ?? "n/a") |")
            } catch {
                print("| \(name) | skipped: \(error) | | | |")
            }
        }
    }

    private func hugeRequest(
        _ backing: HugePageRequest.Backing, _ usable: Int, packing: HugePageRequest.Packing = .oneStackPerRegion,
        prefault: PrefaultPolicy = .none
    ) -> StackRequest {
        StackRequest(usableSize: usable, pages: .huge(HugePageRequest(backing, packing: packing)), prefault: prefault)
    }

    /// Seconds per round, touching one line per 4 KiB and every line; dTLB read misses per round of the
    /// first kind, where the kernel counts them; and the stacks' guard kind.
    private func roundRobin(_ allocator: any StackAllocator, _ request: StackRequest) throws(StackError)
        -> (Timing, Timing, Int?, GuardMechanism)
    {
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: stacks)
        var count = 0
        defer {
            storage.deinitialize(count: count)
            storage.deallocate()
        }
        while count < stacks {
            (storage + count).initialize(to: try allocator.allocate(request))
            count += 1
        }
        let tops = (0..<stacks).map { UnsafeMutableRawPointer(storage[$0].top) }
        let bytes = touchKiB << 10
        func timeRounds(stride step: Int) -> Timing {
            visit(tops, bytes: bytes, stride: step)  // warm: every page faulted in
            return Timing((0..<rounds).map { _ in
                let start = ContinuousClock.now
                visit(tops, bytes: bytes, stride: step)
                return (ContinuousClock.now - start).seconds
            })
        }
        let counter = fs_perf_open_dtlb_read_misses()
        defer { if counter >= 0 { close(counter) } }
        let missesBefore = readCounter(counter)
        let sparse = timeRounds(stride: 4096)
        let missesAfter = readCounter(counter)
        let misses = missesBefore.flatMap { before in missesAfter.map { ($0 - before) / (rounds + 1) } }
        return (sparse, timeRounds(stride: 64), misses, storage[0].guardMechanism)
    }

    /// One round: each stack in turn gets a write every `stride` bytes over its top `bytes`. With a
    /// stride above one line, stack `i` writes line `i` modulo the lines in a stride, so the lines of
    /// different stacks fall in different cache sets (stack tops all share one alignment) and the
    /// round measures the TLB rather than cache-set conflicts.
    @inline(never)
    private func visit(_ tops: [UnsafeMutableRawPointer], bytes: Int, stride step: Int) {
        for (index, top) in tops.enumerated() {
            let line = index % (step / 64) * 64
            var offset = step
            while offset <= bytes {
                let word = (top - offset + line).assumingMemoryBound(to: UInt64.self)
                word.pointee &+= 1
                offset += step
            }
        }
    }

    /// A perf counter's value, nil when there is no counter.
    private func readCounter(_ fd: Int32) -> Int? {
        guard fd >= 0 else { return nil }
        var value: UInt64 = 0
        return read(fd, &value, 8) == 8 ? Int(value) : nil
    }

    private func dtlbCounterAvailability() -> String {
        let fd = fs_perf_open_dtlb_read_misses()
        guard fd >= 0 else { return "unavailable (perf_event_open: \(String(cString: strerror(-fd)))); timing only" }
        close(fd)
        return "available (perf_event_open dTLB read misses)"
    }
}

/// The best (least) and the median of repeated timings, in seconds. On a shared machine the best is
/// the closer estimate of the uncontended cost; the median says how noisy it was.
private struct Timing {
    let best: Double
    let median: Double

    init(_ seconds: [Double]) {
        let sorted = seconds.sorted()
        best = sorted[0]
        median = sorted[sorted.count / 2]
    }

    /// "best / median" in microseconds.
    var microseconds: String { "\(format(best * 1e6)) / \(format(median * 1e6))" }
}


extension Duration {
    /// This duration in seconds.
    fileprivate var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) * 1e-18
    }
}
