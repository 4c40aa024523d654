@_spi(Benchmarks) import GuardPages
import StackAllocators

/// `capacity`: the most live guarded stacks one process holds, with the slab (64 KiB stacks, 64 KiB
/// guards of the default kind), up to `--capacity-limit` stacks or `--capacity-seconds`, whichever
/// comes first, or until the kernel refuses (then `extra.stopped_by_error` is 1 and the error goes to
/// standard error). Measured once (`reps` 1): the median is µs per stack created.
///
/// `extra`: `stacks`, `create_s`, `release_s` (all of them, then `trim()`), `map_lines_added` (with all
/// live), `page_table_bytes` (VmPTE growth: a lightweight guard is a page-table marker),
/// `rss_bytes` (VmRSS growth, which includes the benchmark's own array of `Stack` values, touched before
/// the clock starts), both also
/// per stack (`page_table_bytes_per_stack`, `rss_bytes_per_stack`),
/// `reserved_bytes` (address space the slab reserved), `limit`, `time_bound_s`, `time_bound_hit`.
enum CapacityBenchmarks {
    static func run(_ recorder: BenchRecorder) throws {
        let limit = recorder.capacityStacks
        let bound = recorder.capacitySeconds
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
        let deadline = nanoseconds() + UInt64(bound * 1e9)
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
        recorder.add(BenchResult(
            section: .capacity, name: "slab_guarded_stacks",
            params: ["size": request.usableSize, "guard": request.guardSize], unit: "us",
            samples: [Double(create) / Double(count) / 1000], opsPerRep: count,
            extra: [
                "stacks": Double(count), "create_s": Double(create) / 1e9, "release_s": Double(release) / 1e9,
                "create_s_per_million": Double(create) / Double(count) / 1e3,
                "release_s_per_million": Double(release) / Double(count) / 1e3,
                "map_lines_added": Double(mapsLive - mapsBefore), "page_table_bytes": Double(pteLive - pteBefore),
                "page_table_bytes_per_stack": Double(pteLive - pteBefore) / Double(count),
                "rss_bytes_per_stack": Double(rssLive - rssBefore) / Double(count),
                "rss_bytes": Double(rssLive - rssBefore), "reserved_bytes": Double(reserved),
                "limit": Double(limit), "time_bound_s": bound,
                "time_bound_hit": count < limit && !stoppedByError ? 1 : 0, "stopped_by_error": stoppedByError ? 1 : 0,
            ]))
    }
}
