import Glibc
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import OverflowDetection
import StackAllocators

/// `tlb`: a TLB-sensitive round-robin over many stacks, small pages against huge pages.
///
/// `stacks` stacks of 16 KiB are visited in turn; each visit writes the top 16 KiB of its stack, either
/// one 8-byte word per 4 KiB page (`stride` 4096: 4 pages per stack, so a round touches 4 x `stacks`
/// distinct small pages and little cache) or every 64-byte line (`stride` 64: bound by memory bandwidth).
/// The figure is ns per write, after a first round that faults every page in. `extra.huge_percent`: the
/// share of the first stack in huge pages (/proc/self/smaps).
///
/// - `small_4k`: `MmapStackAllocator` stacks with their 64 KiB guards.
/// - `small_packed`: the control for the packed rows: 16 KiB stacks back to back in one small-page mapping.
/// - `hugetlb_packed`, `thp_packed`: `HugePageStackAllocator` stacks packed 128 to a 2 MiB page (a canary
///   at each bottom instead of a guard: one stack per region would take a whole huge page each).
///
/// Where perf_event_open offers the counters, `extra` also has `dtlb_read_misses_per_round`,
/// `page_faults_per_round` (warm-up and timed rounds) and `first_round_page_faults`.
enum TLBBenchmarks {
    static let stackBytes = 16 << 10

    static func run(_ recorder: BenchRecorder) throws {
        let small = try MmapStackAllocator(logger: benchLogger)
        let huge = HugePageStackAllocator(logger: benchLogger)
        func packed(_ backing: HugePageRequest.Backing) -> StackRequest {
            StackRequest(usableSize: stackBytes, pages: .huge(HugePageRequest(backing, packing: .packed)))
        }
        let cases: [(String, any StackAllocator, StackRequest)] = [
            ("small_4k", small, StackRequest(usableSize: stackBytes)),
            ("hugetlb_packed", huge, packed(.anonymous)),
            ("thp_packed", huge, packed(.transparent)),
        ]
        for (name, allocator, request) in cases {
            try recorder.figure(.tlb, name) { try roundRobin(recorder, name: name, allocator: allocator, request: request) }
        }
        try smallPacked(recorder)
    }

    static func roundRobin(
        _ recorder: BenchRecorder, name: String, allocator: any StackAllocator, request: StackRequest
    ) throws {
        let count = recorder.scale.ops(4_096, quick: 64)
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
        var live = 0
        defer {
            storage.deinitialize(count: live)
            storage.deallocate()
        }
        while live < count {
            (storage + live).initialize(to: try allocator.allocate(request))
            live += 1
        }
        let tops = (0..<count).map { storage[$0].top }
        try rounds(recorder, name: name, tops: tops) { try HugePageStackAllocator.hugePageBytes(of: storage[0]) }
    }

    /// The control: 16 KiB stacks packed back to back in one small-page mapping (`MADV_NOHUGEPAGE`), laid
    /// out as the packed huge-page stacks are, so only the page size differs.
    static func smallPacked(_ recorder: BenchRecorder) throws {
        let count = recorder.scale.ops(4_096, quick: 64)
        let bytes = count * stackBytes
        guard let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED
        else { throw BenchFailure("tlb: mmap of \(bytes) bytes failed: \(errnoText(errno))") }
        defer { munmap(base, bytes) }
        guard madvise(base, bytes, MADV_NOHUGEPAGE) == 0 else {
            throw BenchFailure("tlb: madvise(MADV_NOHUGEPAGE) failed: \(errnoText(errno))")
        }
        try rounds(recorder, name: "small_packed", tops: (1...count).map { base + $0 * stackBytes }) { 0 }
    }

    /// Measures the round-robin over stacks ending at `tops`, at both strides.
    static func rounds(
        _ recorder: BenchRecorder, name: String, tops: [UnsafeMutableRawPointer], hugeBytes: () throws -> Int
    ) throws {
        let scale = recorder.scale
        let count = tops.count
        let roundsPerRep = scale.ops(4, quick: 1)
        for stride in [4096, 64] {
            // Counters perf_event_open does not offer stay nil (the report's `counters` says why).
            let faults = try? PerfCounter(.pageFaults)
            let misses = try? PerfCounter(.dataTLBReadMisses)
            let firstStart = try faults?.read()
            visit(tops, stride: stride)  // faults every page in
            let firstEnd = try faults?.read()
            let hugePercent = min(try hugeBytes(), stackBytes) * 100 / stackBytes
            let (faultsStart, missesStart) = (try faults?.read(), try misses?.read())
            let writesPerRound = count * (stride == 64 ? stackBytes / 64 - 1 : stackBytes / stride)
            let samples = measure(scale, ops: writesPerRound * roundsPerRep) {
                timeLoop(roundsPerRep) { visit(tops, stride: stride) }
            }
            let (faultsEnd, missesEnd) = (try faults?.read(), try misses?.read())
            let rounds = Double((scale.warmups + scale.reps) * roundsPerRep)
            var extra: [String: Double] = [:]
            if let firstStart, let firstEnd, let faultsStart, let faultsEnd {
                extra["first_round_page_faults"] = Double(firstEnd - firstStart)
                extra["page_faults_per_round"] = Double(faultsEnd - faultsStart) / rounds
            }
            if let missesStart, let missesEnd {
                extra["dtlb_read_misses_per_round"] = Double(missesEnd - missesStart) / rounds
            }
            recorder.add(BenchResult(
                section: .tlb, name: name, params: ["stacks": count, "stride": stride],
                samples: samples, opsPerRep: writesPerRound * roundsPerRep,
                extra: extra.merging(["huge_percent": Double(hugePercent)]) { $1 }))
        }
    }

    /// One round: each stack in turn gets a write every `stride` bytes over its top 16 KiB. With a stride
    /// above one line, stack `i` writes line 1 + `i` modulo the other lines of a stride, so the lines of
    /// different stacks fall in different cache sets (stack tops all share one alignment) and the round
    /// measures the TLB rather than cache-set conflicts. The lowest line of a stack is never written: a
    /// packed stack keeps its canary there.
    @inline(never)
    static func visit(_ tops: [UnsafeMutableRawPointer], stride: Int) {
        let lines = stride / 64
        for (index, top) in tops.enumerated() {
            let line = lines > 1 ? (index % (lines - 1) + 1) * 64 : 0
            var offset = stride
            while offset - line <= stackBytes - Canary.size {
                (top - offset + line).assumingMemoryBound(to: UInt64.self).pointee &+= 1
                offset += stride
            }
        }
    }
}
