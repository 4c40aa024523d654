import ArgumentParser
import Foundation
import Synchronization
import StackAllocators

/// `fiberstacks bench-slab` (hidden): the numbers behind docs/benchmarks.md for slabs and pools.
/// Build with `-c release`; run alone on the machine. Each measurement runs `rounds` times and reports
/// the best (least disturbed) and the median. Prints Markdown tables.
struct BenchSlab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-slab", abstract: "Benchmark slab and pooled stack allocators (Markdown).",
        shouldDisplay: false)

    @Option(help: "Acquire+release pairs per pooled measurement.")
    var iterations = 5_000_000

    @Option(help: "Stacks per cold-carve and mmap measurement.")
    var stacks = 20_000

    @Option(help: "Stacks for the bulk creation measurement.")
    var million = 1_000_000

    @Option(help: "Rounds of each measurement (not of the bulk one).")
    var rounds = 5

    @Option(parsing: .upToNextOption, help: "Sections to run: pooled, carve, scrub, bulk.")
    var sections = ["pooled", "carve", "scrub", "bulk"]

    func run() throws {
        if sections.contains("pooled") { try pooled() }
        if sections.contains("carve") { try carve() }
        if sections.contains("scrub") { try scrub() }
        if sections.contains("bulk") { try bulk() }
    }

    // MARK: - Pooled acquire+release

    private func pooled() throws {
        print("## Pooled acquire+release\n")
        print("64 KiB stacks from a pool over a slab; \(iterations) acquire+release pairs per thread and round, "
            + "best (median) of \(rounds) rounds.\n")
        print("| configuration | threads | ns per acquire+release |")
        print("|---|---|---|")
        let request = StackRequest(usableSize: 64 << 10)
        let null = opaque(try NullStackAllocator() as any StackAllocator)
        let floor = try Rounds(rounds) { try timed(iterations) { try null.allocate(request).release() } }
        print("| floor: a `Stack` made and dropped by an allocator that does nothing (retain, release, dynamic call) "
            + "| 1 | \(floor.text(digits: 1)) |")
        for (name, config, threads) in [
            ("thread cache 16 (default)", PooledStackAllocator.Configuration(stack: request), 1),
            ("thread cache 16 (default)", PooledStackAllocator.Configuration(stack: request), 2),
            ("no thread cache (depot mutex)", PooledStackAllocator.Configuration(stack: request, threadCacheSize: 0), 1),
            ("no thread cache (depot mutex)", PooledStackAllocator.Configuration(stack: request, threadCacheSize: 0), 2),
            ("thread cache 16, scrub on release (untouched stack: mincore only)",
             PooledStackAllocator.Configuration(stack: request, scrubOnRelease: true), 1),
            ("thread cache 16, watermark 16 KiB on every release (untouched stack)",
             PooledStackAllocator.Configuration(
                stack: request, hotWatermark: .init(bytes: 16 << 10, timing: .everyRelease)), 1),
        ] {
            let pool = try PooledStackAllocator(wrapping: try SlabStackAllocator(), config)
            let perThread = name.contains("every release") || name.contains("scrub") ? iterations / 100 : iterations
            let nanoseconds = try Rounds(rounds) {
                try concurrently(threads) {
                    for _ in 0..<1000 { try pool.allocate(request).release() }
                    return try timed(perThread) { try pool.allocate(request).release() }
                }.max()!
            }
            print("| \(name) | \(threads) | \(nanoseconds.text(digits: 1)) |")
        }
        print()
    }

    // MARK: - Cold carve vs mmap

    private func carve() throws {
        print("## Cold stack: slab carve vs mmap\n")
        print("64 KiB usable, 64 KiB guard; \(stacks) stacks per row, all live before any is released; a fresh "
            + "allocator per round; best (median) of \(rounds) rounds.\n")
        print("| allocator, guard | allocate µs/stack | release µs/stack |")
        print("|---|---|---|")
        var modes: [GuardMode] = [.mprotect]
        if GuardInstaller.lightweightGuardsSupported { modes.insert(.lightweight, at: 0) }
        var best: [String: Double] = [:]
        for mode in modes {
            let guardName = mode == .lightweight ? "MADV_GUARD_INSTALL" : "mprotect"
            var allocate: [Double] = []
            var release: [Double] = []
            for _ in 0..<rounds {
                let (a, r) = try allocateThenRelease(try MmapStackAllocator(guardMode: mode))
                allocate.append(a)
                release.append(r)
            }
            let (a, r) = (Rounds(allocate), Rounds(release))
            best["mmap/\(mode)"] = a.best + r.best
            print("| mmap + \(guardName) / munmap (MmapStackAllocator) | \(a.text(scale: 1e-3)) | \(r.text(scale: 1e-3)) |")
        }
        for mode in modes {
            var cold: [(Double, Double)] = []
            var reused: [(Double, Double)] = []
            for _ in 0..<rounds {
                // Keep emptied regions, so the second pass reuses released slots instead of carving anew.
                let slab = try SlabStackAllocator(.init(guardMode: mode, retainedEmptyRegions: .max))
                cold.append(try allocateThenRelease(slab))
                reused.append(try allocateThenRelease(slab))
            }
            let coldAllocate = Rounds(cold.map(\.0)), coldRelease = Rounds(cold.map(\.1))
            best["slab/\(mode)"] = coldAllocate.best + coldRelease.best
            best["slab-carve/\(mode)"] = coldAllocate.best
            print("| slab, cold slots (carve: \(mode) guard) / MADV_DONTNEED | \(coldAllocate.text(scale: 1e-3)) "
                + "| \(coldRelease.text(scale: 1e-3)) |")
            print("| slab, released slots reused (\(mode) guard kept) / MADV_DONTNEED | \(Rounds(reused.map(\.0)).text(scale: 1e-3)) "
                + "| \(Rounds(reused.map(\.1)).text(scale: 1e-3)) |")
        }
        if let slab = best["slab/\(modes[0])"], let mmap = best["mmap/mprotect"] {
            print("\nBest rounds, cold stack allocate+release: slab (\(modes[0]) guard) \(format(slab / 1000, digits: 2)) µs, "
                + "mmap + mprotect + munmap \(format(mmap / 1000, digits: 2)) µs: \(format(mmap / slab, digits: 1))x. "
                + "Slab carve alone: \(format(mmap / best["slab-carve/\(modes[0])"]!, digits: 1))x faster than the mmap cycle.")
        }
        print()
    }

    /// Allocates `stacks` stacks (all live), then releases them: nanoseconds per allocate and per release.
    private func allocateThenRelease(_ allocator: some StackAllocator) throws -> (Double, Double) {
        let request = StackRequest(usableSize: 64 << 10)
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: stacks)
        defer { storage.deallocate() }
        var index = 0
        let allocate = try timed(stacks) {
            (storage + index).initialize(to: try allocator.allocate(request))
            index += 1
        }
        let release = timed(stacks) {
            index -= 1
            (storage + index).deinitialize(count: 1)
        }
        return (allocate, release)
    }

    // MARK: - Scrub

    private func scrub() throws {
        print("## Scrub and discard cost\n")
        print("256 KiB stacks from a pool over a slab; each iteration acquires, writes `depth` bytes below the top, "
            + "releases (20,000 iterations, best of \(rounds) rounds). Cost per KiB = (time with the option - time "
            + "without) / depth; discard = watermark 0 on every release, so the next owner faults the pages back.\n")
        print("| depth | baseline ns/iteration | scrub (mincore + memset) ns/KiB | discard (MADV_DONTNEED + refault) ns/KiB |")
        print("|---|---|---|---|")
        let request = StackRequest(usableSize: 256 << 10)
        let slab = try SlabStackAllocator(.init(usableSize: 256 << 10))
        func pool(_ scrub: Bool, _ watermark: PooledStackAllocator.HotWatermark?) throws -> PooledStackAllocator {
            try PooledStackAllocator(
                wrapping: slab, .init(stack: request, hotWatermark: watermark, scrubOnRelease: scrub))
        }
        let variants = [
            try pool(false, nil), try pool(true, nil), try pool(false, .init(bytes: 0, timing: .everyRelease)),
        ]
        for depth in [4 << 10, 16 << 10, 64 << 10, 256 << 10] {
            let results = try variants.map { pool in
                try Rounds(rounds) {
                    try timed(20_000) {
                        let stack = try pool.allocate(request)
                        memset(stack.top - depth, 0x5A, depth)
                        stack.release()
                    }
                }.best
            }
            let kib = Double(depth >> 10)
            print("| \(depth >> 10) KiB | \(format(results[0])) | \(format((results[1] - results[0]) / kib, digits: 1)) "
                + "| \(format((results[2] - results[0]) / kib, digits: 1)) |")
        }
        print()
    }

    // MARK: - A million stacks

    private func bulk() throws {
        print("## \(million) guarded stacks\n")
        print("| measure | value |")
        print("|---|---|")
        let slab = try SlabStackAllocator()
        let request = StackRequest(usableSize: 64 << 10)
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: million)
        defer { storage.deallocate() }
        let mapsBefore = try MapCount.current()
        let rssBefore = statusKiB("VmRSS"), pteBefore = statusKiB("VmPTE")
        var index = 0
        let create = try timed(million) {
            (storage + index).initialize(to: try slab.allocate(request))
            index += 1
        }
        let mapsAfter = try MapCount.current()
        let rssAfter = statusKiB("VmRSS"), pteAfter = statusKiB("VmPTE")
        let resident = try slab.residentBytes()
        let reserved = slab.stats.bytesReserved
        let release = timed(million) {
            index -= 1
            (storage + index).deinitialize(count: 1)
        }
        slab.trim()
        let mapsReleased = try MapCount.current()
        print("| guard | \(slab.guardMechanism) |")
        print("| create, total | \(format(create * Double(million) / 1e9, digits: 2)) s (\(format(create / 1000, digits: 2)) µs per stack) |")
        print("| release, total | \(format(release * Double(million) / 1e9, digits: 2)) s |")
        print("| map lines | \(mapsBefore) before, \(mapsAfter) with all live (+\(mapsAfter - mapsBefore)), \(mapsReleased) after release and trim |")
        print("| VmRSS growth (includes the test's Stack storage) | \((rssAfter - rssBefore) >> 10) MiB |")
        print("| VmPTE growth (page tables: guard markers) | \((pteAfter - pteBefore) >> 10) MiB |")
        print("| slab resident bytes (mincore) | \(resident) |")
        print("| address space reserved (MAP_NORESERVE) | \(reserved >> 30) GiB in \(reserved / slab.regionSize) regions |")
        print()
    }
}

/// Hands out one fixed descriptor and takes it back doing nothing: the cost of `Stack` itself.
private final class NullStackAllocator: StackAllocator {
    let descriptor: StackDescriptor

    init() throws {
        descriptor = StackDescriptor(
            layout: try StackLayout(base: 1 << 30, sizes: try StackSizes(usable: 64 << 10, guard: 0)), guardMechanism: .none)
    }

    func allocate(_ request: StackRequest) -> Stack { Stack(descriptor: descriptor, allocator: self) }
    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {}
}

/// Several measurements of one thing: the best (least disturbed by other load) and the median.
private struct Rounds {
    let best: Double
    let median: Double

    init(_ values: [Double]) {
        let sorted = values.sorted()
        best = sorted[0]
        median = sorted[sorted.count / 2]
    }

    init(_ count: Int, _ measure: () throws -> Double) rethrows {
        var values: [Double] = []
        for _ in 0..<Swift.max(1, count) { values.append(try measure()) }
        self.init(values)
    }

    /// "best (median)", multiplied by `scale`.
    func text(scale: Double = 1, digits: Int = 2) -> String {
        "\(format(best * scale, digits: digits)) (\(format(median * scale, digits: digits)))"
    }
}

/// `value`, hidden from the optimizer.
@inline(never)
private func opaque<T>(_ value: T) -> T { value }

/// Runs `body` on `threads` threads at once; returns each thread's result.
private func concurrently(_ threads: Int, _ body: @escaping @Sendable () throws -> Double) throws -> [Double] {
    let results = Mutex<[Double]>([])
    let failure = Mutex<(any Error)?>(nil)
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
        do {
            let value = try body()
            results.withLock { $0.append(value) }
        } catch {
            failure.withLock { $0 = error }
        }
    }
    if let error = failure.withLock({ $0 }) { throw error }
    return results.withLock { $0 }
}

/// Nanoseconds per call of `body`, over `count` calls.
private func timed(_ count: Int, _ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<count { try body() }
    return Double(DispatchTime.now().uptimeNanoseconds - start) / Double(count)
}

private func format(_ value: Double, digits: Int = 1) -> String {
    String(format: "%.\(digits)f", value)
}

/// A `kB` field of /proc/self/status, in KiB.
private func statusKiB(_ field: String) -> Int {
    guard let status = try? SystemFile.read("/proc/self/status"),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") })
    else { return 0 }
    return line.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap { Int($0) } ?? 0
}
