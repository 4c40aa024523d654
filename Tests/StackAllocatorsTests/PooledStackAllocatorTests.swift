@_spi(Benchmarks) import GuardPages
import Glibc
import StackAllocators
import StackTestSupport
import Synchronization
import Testing

@Suite("PooledStackAllocator")
struct PooledStackAllocatorTests {
    static let request = StackRequest(usableSize: 64 << 10)

    static func pool(
        over inner: any StackAllocator, _ configure: (inout PooledStackAllocator.Configuration) -> Void = { _ in }
    ) throws -> PooledStackAllocator {
        var configuration = PooledStackAllocator.Configuration(stack: request)
        configure(&configuration)
        return try PooledStackAllocator(wrapping: inner, configuration)
    }

    @Test("A pooled stack is the inner stack: same memory, guard kept; release does not unmap and it is reused")
    func reuse() throws {
        let inner = try MmapStackAllocator()
        let pool = try Self.pool(over: inner)
        let stack = try pool.allocate(Self.request)
        let layout = stack.descriptor.layout
        #expect(try Probe.accessiblePages(in: stack.guardRange) == 0)
        #expect(inner.stats.live == 1)
        stack.release()
        #expect(try !Probe.isUnmapped(layout.usableRange))
        #expect(inner.stats.live == 1, "the pool keeps the inner stack")
        #expect(pool.stats.cached == 1)
        let again = try pool.allocate(Self.request)
        #expect(again.descriptor.layout == layout)
        #expect(try StackProbeReport(layout: again.descriptor.layout).guardIsSound)
        #expect(pool.stats.allocations == 2 && pool.stats.releases == 1 && pool.stats.live == 1)
        #expect(pool.stats.liveByGuard[again.guardMechanism] == 1)
        #expect(inner.stats.allocations == 1)
    }

    @Test("The floor is made at init and survives trimming")
    func floor() throws {
        let inner = try SlabStackAllocator()
        let pool = try Self.pool(over: inner) {
            $0.minimumIdle = 3
            $0.idlePeriod = .zero
        }
        #expect(pool.stats.cached == 3)
        #expect(inner.stats.live == 3)
        #expect(pool.stats.bytesReserved == 3 * (128 << 10))
        #expect(pool.trim() == 0)
        #expect(pool.stats.cached == 3)
        #expect(inner.stats.live == 3)
    }

    @Test("The cap bounds the depot; what exceeds it goes back to the inner allocator")
    func cap() throws {
        let inner = try SlabStackAllocator()
        // No thread cache: every stack goes through the depot, so the cap is exact.
        let exact = try Self.pool(over: inner) {
            $0.maximumIdle = 4
            $0.threadCacheSize = 0
        }
        try withStacks(exact, count: 10) {}
        #expect(exact.stats.cached == 4)
        #expect(inner.stats.live == 4)
        #expect(exact.stats.trims == 0, "cap overflow is not a trim")

        // With a thread cache of 8: at most cap + 8 idle.
        let cached = try Self.pool(over: inner) {
            $0.maximumIdle = 4
            $0.threadCacheSize = 8
        }
        try withStacks(cached, count: 30) {}
        #expect(cached.stats.cached <= 4 + 8)
        #expect(cached.stats.cached >= 4)
        #expect(inner.stats.live == 4 + cached.stats.cached)
    }

    @Test("Trim gives back what stayed idle for the period, down to the floor, and counts it")
    func trim() throws {
        let inner = try SlabStackAllocator()
        let patient = try Self.pool(over: inner) {
            $0.minimumIdle = 2
            $0.idlePeriod = .seconds(3600)
        }
        try withStacks(patient, count: 6) {}
        #expect(patient.trim() == 0, "nothing has been idle for an hour")
        #expect(patient.stats.cached == 6)

        let eager = try Self.pool(over: inner) {
            $0.minimumIdle = 2
            $0.idlePeriod = .milliseconds(50)
        }
        try withStacks(eager, count: 6) {}
        #expect(eager.stats.cached == 6)
        #expect(eager.trim() == 0, "just deposited: not idle for 50 ms yet")
        usleep(100_000)
        #expect(eager.trim() == 4)
        #expect(eager.stats.cached == 2)
        #expect(eager.stats.trims == 4)
        #expect(inner.stats.live == 6 + 2)
    }

    @Test("After trim, an idle pooled stack keeps only the hot watermark resident")
    func watermarkOnDeposit() throws {
        let inner = try MmapStackAllocator()
        let pool = try PooledStackAllocator(
            wrapping: inner,
            .init(stack: StackRequest(usableSize: 256 << 10), minimumIdle: 0, idlePeriod: .seconds(3600),
                  hotWatermark: .init(bytes: 16 << 10, timing: .whenDeposited)))
        let stack = try pool.allocate(StackRequest(usableSize: 256 << 10))
        memset(stack.usableBottom, 0x77, stack.usableSize)
        let layout = stack.descriptor.layout
        stack.release()
        #expect(try Probe.residentPages(in: layout.usableRange) == 64, "a release into the thread cache keeps every page")
        pool.trim()
        #expect(pool.stats.cached == 1, "kept: not idle for an hour")
        let residency = try Probe.residency(of: layout.usableRange)
        #expect(residency.filter { $0 }.count == 4, "16 KiB stay resident")
        #expect(residency.suffix(4).allSatisfy { $0 }, "the resident pages are the top ones")
        #expect(try pool.residentBytes() == 16 << 10)
    }

    @Test("With the watermark on every release, a released stack drops to it at once")
    func watermarkEveryRelease() throws {
        let pool = try PooledStackAllocator(
            wrapping: try MmapStackAllocator(),
            .init(stack: StackRequest(usableSize: 256 << 10), hotWatermark: .init(bytes: 32 << 10, timing: .everyRelease)))
        let stack = try pool.allocate(StackRequest(usableSize: 256 << 10))
        memset(stack.usableBottom, 0x77, stack.usableSize)
        let layout = stack.descriptor.layout
        stack.release()
        #expect(try Probe.residentPages(in: layout.usableRange) == 8)
    }

    @Test("Scrubbed stacks read back zero where the previous owner wrote; unscrubbed ones do not", arguments: [true, false])
    func scrub(enabled: Bool) throws {
        let pool = try Self.pool(over: try MmapStackAllocator()) {
            $0.scrubOnRelease = enabled
            $0.hotWatermark = nil
        }
        let first = try pool.allocate(Self.request)
        let written = 40 << 10
        memset(first.top - written, 0xAB, written)
        let base = first.descriptor.layout.base
        first.release()
        let second = try pool.allocate(Self.request)
        #expect(second.descriptor.layout.base == base, "the same stack comes back")
        let bytes = UnsafeRawBufferPointer(start: second.top - written, count: written)
        #expect(bytes.allSatisfy { $0 == 0 } == enabled)
        #expect(try Probe.residentPages(in: second.descriptor.layout.usableRange) == written / systemPageSize,
                "scrubbing zeroes in place: the pages stay resident")
    }

    @Test("Requests larger than the pool's stacks, and invalid configurations, are typed errors")
    func badInput() throws {
        let inner = try MmapStackAllocator()
        let pool = try Self.pool(over: inner)
        do {
            _ = try pool.allocate(StackRequest(usableSize: 128 << 10))
            Issue.record("a larger request was accepted")
        } catch {
            guard case .invalidSize = error.reason else { Issue.record("got \(error)"); return }
        }
        let smaller = try pool.allocate(StackRequest(usableSize: 4096, guardSize: 4096))
        #expect(smaller.usableSize == 64 << 10)
        // Each invalid field is named with its value and what it accepts.
        let invalid: [(PooledStackAllocator.Configuration, field: String, value: String, allowed: String)] = [
            (.init(stack: StackRequest(usableSize: 0)), "stack.usableSize", "0", "1...4294967296"),
            (.init(stack: StackRequest(guardSize: -1)), "stack.guardSize", "-1", "0...67108864"),
            (.init(minimumIdle: 5, maximumIdle: 4), "minimumIdle", "5", "0...maximumIdle (4)"),
            (.init(minimumIdle: -1), "minimumIdle", "-1", "0...maximumIdle (256)"),
            (.init(maximumIdle: -1), "maximumIdle", "-1", "0..."),
            (.init(maximumIdle: Int.max), "maximumIdle", "\(Int.max)", "0..."),
            (.init(threadCacheSize: -1), "threadCacheSize", "-1", "0...65536"),
            (.init(threadCacheSize: 65537), "threadCacheSize", "65537", "0...65536"),
            (.init(idlePeriod: .seconds(-1)), "idlePeriod", "-1.0 seconds", "zero or positive"),
            (.init(hotWatermark: .init(bytes: -1)), "hotWatermark.bytes", "-1", "zero or positive"),
        ]
        for (configuration, field, value, allowed) in invalid {
            expectInvalidConfiguration(
                type: "PooledStackAllocator.Configuration", field: field, value: value, allowed: allowed
            ) { () throws(StackError) in
                _ = try PooledStackAllocator(wrapping: inner, configuration)
            }
        }
        #expect(inner.stats.live == 1)
    }

    @Test("A pool whose inner allocator refuses its stacks fails at init and leaves nothing behind")
    func innerRefuses() throws {
        let slab = try SlabStackAllocator(.init(usableSize: 16 << 10))
        do {
            _ = try PooledStackAllocator(wrapping: slab, .init(stack: StackRequest(usableSize: 64 << 10), minimumIdle: 2))
            Issue.record("a pool of 64 KiB stacks over a slab of 16 KiB stacks was made")
        } catch {
            guard case .invalidSize = error.reason else { Issue.record("got \(error)"); return }
        }
        #expect(slab.stats.allocations == 0)
        // The failed pool unregistered itself: a new pool and a thread exit work as usual.
        let pool = try PooledStackAllocator(wrapping: slab, .init(stack: StackRequest(usableSize: 16 << 10)))
        JoinableThread { try! pool.allocate(StackRequest(usableSize: 16 << 10)).release() }.join()
        #expect(pool.stats.cached == 1)
    }

    @Test("Several threads acquiring and releasing: counts balance, and the pool gives everything back when dropped")
    func concurrency() throws {
        let inner = try SlabStackAllocator()
        let threads = 4
        let iterations = 20_000
        do {
            let pool = try Self.pool(over: inner) {
                $0.threadCacheSize = 8
                $0.maximumIdle = 16
            }
            let failures = Atomic<Int>(0)
            let workers = (0..<threads).map { worker in
                JoinableThread {
                    let held = UnsafeMutablePointer<Stack>.allocate(capacity: 4)
                    defer { held.deallocate() }
                    for iteration in 0..<iterations {
                        let count = 1 + (iteration + worker) % 4
                        do {
                            for index in 0..<count { (held + index).initialize(to: try pool.allocate(Self.request)) }
                        } catch {
                            failures.add(1, ordering: .relaxed)
                            return
                        }
                        held.pointee.top.advanced(by: -1).storeBytes(of: UInt8(worker), as: UInt8.self)
                        held.deinitialize(count: count)
                    }
                }
            }
            for worker in workers { worker.join() }
            #expect(failures.load(ordering: .relaxed) == 0)
            let stats = pool.stats
            let expected = (0..<threads).reduce(0) { total, worker in
                total + (0..<iterations).reduce(0) { $0 + 1 + ($1 + worker) % 4 }
            }
            #expect(stats.allocations == expected)
            #expect(stats.releases == expected)
            #expect(stats.live == 0)
            #expect(stats.liveByGuard.isEmpty)
            #expect(inner.stats.live == stats.cached, "every stack the inner allocator handed out is idle in the pool")
            #expect(stats.cached <= 16 + threads * 8)
        }
        #expect(inner.stats.live == 0, "the pool gave every stack back when it was dropped")
    }

    @Test("Stacks acquired on one thread and released on another balance, and are reused")
    func migration() throws {
        let inner = try SlabStackAllocator()
        let pool = try Self.pool(over: inner) { $0.threadCacheSize = 4 }
        let count = 1000
        nonisolated(unsafe) let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
        defer { storage.deallocate() }
        for round in 0..<3 {
            JoinableThread {
                for index in 0..<count { (storage + index).initialize(to: try! pool.allocate(Self.request)) }
            }.join()
            JoinableThread {
                storage.deinitialize(count: count)
            }.join()
            let stats = pool.stats
            #expect(stats.allocations == (round + 1) * count && stats.releases == (round + 1) * count)
            #expect(inner.stats.live == stats.cached)
        }
        #expect(inner.stats.allocations < 3 * count, "released stacks were reused across threads")
    }

    @Test("A pool dropped while stacks are out lives until the last comes back, then gives every stack back", needsNoSanitizer)
    func droppedWhileOut() async {
        // In a child: the last check reads the freed stacks back from the kernel, and another test's
        // mapping could take their addresses first.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let inner = try MmapStackAllocator()
            let count = 3
            let stacks = UnsafeMutablePointer<Stack>.allocate(capacity: count)
            defer { stacks.deallocate() }
            weak var dropped: PooledStackAllocator?
            do {
                let pool = try Self.pool(over: inner)
                for index in 0..<count { (stacks + index).initialize(to: try pool.allocate(Self.request)) }
                dropped = pool
            }
            ensure(dropped == nil, "the pool object the test made is still alive")
            let wholes = (0..<count).map { stacks[$0].descriptor.layout.base..<stacks[$0].descriptor.layout.top }
            for index in 0..<count {
                let stack = stacks + index
                let mapped = try KernelMaps.mappedBytes(in: wholes[index])
                let accessible = try Probe.accessiblePages(in: stack.pointee.descriptor.layout.guardRange)
                ensure(mapped == wholes[index].count && accessible == 0, "stack \(index): \(mapped) B mapped, \(accessible) guard pages readable")
                memset(stack.pointee.top - 4096, 0x5A, 4096)
            }
            do {
                // A stack's allocator is a handle on the same pool: it hands out and takes back as before.
                guard let handle = stacks.pointee.allocator as? PooledStackAllocator else { fail("not a pool handle") }
                let extra = try handle.allocate(Self.request)
                ensure(handle.stats.live == count + 1, "\(handle.stats)")
                extra.release()
                ensure(handle.stats.live == count && handle.stats.cached == 1, "\(handle.stats)")
            }
            stacks.deinitialize(count: count - 1)
            for index in 0..<count - 1 {
                let mapped = try KernelMaps.mappedBytes(in: wholes[index])
                ensure(mapped == wholes[index].count, "pooled, not given back: stack \(index) is unmapped")
            }
            ensure(inner.stats.live == count + 1, "\(inner.stats)")
            (stacks + count - 1).deinitialize(count: 1)
            // The last stack took the pool away: every stack it held went back to the kernel.
            ensure(inner.stats.live == 0, "\(inner.stats)")
            for whole in wholes {
                let mapped = try KernelMaps.mappedBytes(in: whole)
                ensure(mapped == 0, "\(mapped) B still mapped after the pool went")
            }
        }
    }

    @Test("Threads releasing a dropped pool's stacks while it is dropped: every stack goes back once")
    func droppedWhileReleasing() throws {
        let inner = try SlabStackAllocator()
        let threads = 4
        let perThread = 64
        for _ in 0..<20 {
            nonisolated(unsafe) let stacks = UnsafeMutablePointer<Stack>.allocate(capacity: threads * perThread)
            defer { stacks.deallocate() }
            let start = Atomic<Bool>(false)
            let workers: [JoinableThread]
            do {
                let pool = try Self.pool(over: inner) { $0.threadCacheSize = 8 }
                for index in 0..<threads * perThread { (stacks + index).initialize(to: try pool.allocate(Self.request)) }
                workers = (0..<threads).map { worker in
                    JoinableThread {
                        while !start.load(ordering: .acquiring) {}
                        (stacks + worker * perThread).deinitialize(count: perThread)
                    }
                }
                start.store(true, ordering: .releasing)
            }
            for worker in workers { worker.join() }
            #expect(inner.stats.live == 0 && inner.stats.refusedReleases == 0)
        }
    }

    @Test("A pool dropped while a thread releases its stacks from its cache is freed every time, with every stack")
    func droppedDuringCachedReleases() throws {
        // Releases into a thread cache settle their slot without a locked instruction until the pool is
        // closed; a close that counted a stack as out while its release was settling would keep the pool
        // (and every stack in it) forever. Many short races, so one that lands in that window is likely.
        let inner = try SlabStackAllocator()
        let count = 16
        nonisolated(unsafe) let stacks = UnsafeMutablePointer<Stack>.allocate(capacity: count)
        defer { stacks.deallocate() }
        for round in 0..<3_000 {
            let ready = Atomic<Bool>(false)
            let start = Atomic<Bool>(false)
            let worker: JoinableThread
            do {
                let pool = try Self.pool(over: inner) { $0.threadCacheSize = 2 * count }
                // Unretained: the worker must not keep the pool's only handle alive past the race.
                let handle = Unmanaged.passUnretained(pool)
                worker = JoinableThread {
                    // Its own cache exists before the race: every release below takes the cached path.
                    for index in 0..<count {
                        (stacks + index).initialize(to: try! handle.takeUnretainedValue().allocate(Self.request))
                    }
                    ready.store(true, ordering: .releasing)
                    while !start.load(ordering: .acquiring) {}
                    stacks.deinitialize(count: count)
                }
                withExtendedLifetime(pool) {
                    while !ready.load(ordering: .acquiring) {}
                    start.store(true, ordering: .releasing)
                }
            }
            worker.join()
            guard inner.stats.live == 0 else {
                Issue.record("round \(round): the dropped pool still holds \(inner.stats.live) stacks")
                return
            }
        }
    }

    @Test("A thread's cache goes to the depot when the thread exits")
    func threadExit() throws {
        let inner = try SlabStackAllocator()
        let pool = try Self.pool(over: inner) {
            $0.idlePeriod = .zero
            $0.hotWatermark = nil
        }
        JoinableThread {
            let stacks = UnsafeMutablePointer<Stack>.allocate(capacity: 5)
            for index in 0..<5 { (stacks + index).initialize(to: try! pool.allocate(Self.request)) }
            stacks.deinitialize(count: 5)
            stacks.deallocate()
        }.join()
        #expect(pool.stats.cached == 5)
        #expect(pool.stats.allocations == 5 && pool.stats.releases == 5)
        #expect(pool.trim() == 5, "the exited thread's stacks are in the depot, where trim reaches them")
        #expect(inner.stats.live == 0)
    }
}

/// Allocates `count` stacks from `allocator`, runs `body`, releases them all.
func withStacks(_ allocator: some StackAllocator, count: Int, _ body: () throws -> Void) throws {
    let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
    defer { storage.deallocate() }
    var made = 0
    defer { storage.deinitialize(count: made) }
    for index in 0..<count {
        (storage + index).initialize(to: try allocator.allocate(StackRequest(usableSize: 64 << 10)))
        made += 1
    }
    try body()
}

/// A thread that can be waited for: after `join()`, its thread-local destructors have run.
final class JoinableThread: @unchecked Sendable {
    private var handle = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        final class Box {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let created = pthread_create(&handle, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box)
        precondition(created == 0, "pthread_create failed: \(created)")
    }

    /// Waits for the thread to end.
    func join() { pthread_join(handle, nil) }
}
