@_spi(Benchmarks) import GuardPages
import Glibc
@_spi(Benchmarks) import OverflowDetection
import StackAllocators
import StackTestSupport
import Testing

@Suite("MmapStackAllocator")
struct MmapStackAllocatorTests {
    static var guardModes: [GuardMode] {
        GuardMode.forcible
    }

    /// In a child process: only there can "unmapped after release" be read back, since in the test
    /// process another test may map the same addresses the moment they are freed.
    @Test("A stack is the layout it says: guard inaccessible, usable range writable, released once", arguments: guardModes)
    func allocate(mode: GuardMode) async throws {
        await #expect(processExitsWith: .success) { [mode] in
            let allocator = try MmapStackAllocator(guardMode: mode)
            let stack = try allocator.allocate(StackRequest(usableSize: 100_000, guardSize: 5000))
            ensure(stack.usableSize == 102_400, "rounded up to 25 pages")
            ensure(stack.guardRange.count == 8192)
            ensure(stack.guardMechanism == (mode == .lightweight ? .lightweight : .protNone))
            ensure(UInt(bitPattern: stack.top) - UInt(bitPattern: stack.usableBottom) == 102_400)
            stack.usableBottom.storeBytes(of: 0xAB, as: UInt8.self)
            (stack.top - 1).storeBytes(of: 0xCD, as: UInt8.self)
            let accessible = try Probe.accessiblePages(in: stack.guardRange)
            ensure(accessible == 0, "the guard is accessible")
            ensure(allocator.stats.live == 1 && allocator.stats.liveByGuard[stack.guardMechanism] == 1)
            let whole = stack.descriptor.layout.base..<stack.descriptor.layout.top
            stack.release()
            let unmapped = try Probe.isUnmapped(whole)
            ensure(unmapped, "the released stack is still mapped")
            ensure(allocator.stats.live == 0 && allocator.stats.releases == 1 && allocator.stats.bytesReserved == 0)
        }
    }

    /// In a child process, like the test above: the freed ranges are read back.
    @Test("A batch is one range cut into guarded, registered stacks, each released and unmapped on its own", arguments: guardModes)
    func batch(mode: GuardMode) async throws {
        await #expect(processExitsWith: .success) { [mode] in
            let allocator = try MmapStackAllocator(guardMode: mode)
            let count = 16
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
            var made = 0
            try allocator.allocate(StackRequest(usableSize: 64 << 10), count: count) { stack in
                (storage + made).initialize(to: stack)
                made += 1
            }
            ensure(made == count && allocator.stats.live == count, "\(made) stacks, \(allocator.stats)")
            let layouts = (0..<count).map { storage[$0].descriptor.layout }.sorted { $0.base < $1.base }
            for (layout, next) in zip(layouts, layouts.dropFirst()) {
                ensure(layout.top == next.base, "not one range: \(layout) then \(next)")
            }
            for layout in layouts {
                let probe = try StackProbeReport(layout: layout)
                ensure(probe.guardIsSound, "\(layout): \(probe)")
                ensure(GuardRegistry.entry(forStackAt: layout.usableBottom)?.guardRange == layout.guardRange, "not registered")
                UnsafeMutableRawPointer(bitPattern: layout.top - 1)!.storeBytes(of: 0xCD, as: UInt8.self)
            }
            // Every other stack first: each release unmaps its own range and no neighbour's.
            let byBase = Dictionary(uniqueKeysWithValues: (0..<count).map { (storage[$0].descriptor.layout.base, $0) })
            for (position, layout) in layouts.enumerated() where position % 2 == 1 {
                (storage + byBase[layout.base]!).deinitialize(count: 1)
            }
            for (position, layout) in layouts.enumerated() {
                let mapped = try KernelMaps.mappedBytes(in: layout.base..<layout.top)
                ensure(mapped == (position % 2 == 1 ? 0 : layout.sizes.total), "stack \(position): \(mapped) bytes mapped")
            }
            for (position, layout) in layouts.enumerated() where position % 2 == 0 {
                (storage + byBase[layout.base]!).deinitialize(count: 1)
            }
            storage.deallocate()
            let left = try KernelMaps.mappedBytes(in: layouts.first!.base..<layouts.last!.top)
            ensure(left == 0 && allocator.stats.live == 0, "\(left) bytes left, \(allocator.stats)")
        }
    }

    @Test("A batch that fails part way leaves the stacks handed over with their owner and unmaps the rest")
    func batchFailure() async throws {
        await #expect(processExitsWith: .success) {
            let allocator = try MmapStackAllocator()
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: 3)
            var made = 0
            var failure: StackError?
            do throws(StackError) {
                try allocator.allocate(StackRequest(usableSize: 64 << 10), count: 16) { (stack) throws(StackError) in
                    guard made < 3 else { throw StackError(message: "enough") }
                    (storage + made).initialize(to: stack)
                    made += 1
                }
            } catch {
                failure = error
            }
            ensure(failure?.message == "enough" && made == 3, "\(String(describing: failure)), \(made) made")
            // The fourth stack went back when the body threw; the twelve never made were never handed out.
            ensure(allocator.stats.live == 3, "\(allocator.stats)")
            // The batch's range: the stacks were cut from its start in order.
            let base = (0..<3).map { storage[$0].descriptor.layout.base }.min()!
            let total = UInt(storage[0].descriptor.layout.sizes.total)
            let held = try KernelMaps.mappedBytes(in: base..<(base + 3 * total))
            let rest = try KernelMaps.mappedBytes(in: (base + 3 * total)..<(base + 16 * total))
            ensure(held == Int(3 * total) && rest == 0, "held \(held) bytes mapped, the rest \(rest)")
            storage.deinitialize(count: 3)
            storage.deallocate()
            ensure(allocator.stats.live == 0, "\(allocator.stats)")
        }
    }

    @Test("A zero guard means an unguarded stack, reported as such")
    func unguarded() throws {
        let stack = try MmapStackAllocator().allocate(StackRequest(usableSize: 65536, guardSize: 0))
        #expect(stack.guardMechanism == .none)
        #expect(stack.guardRange.isEmpty)
    }

    @Test("Prefault policies decide residency", arguments: PrefaultStrategy.allCases)
    func prefault(strategy: PrefaultStrategy) throws {
        let stack = try MmapStackAllocator().allocate(StackRequest(usableSize: 512 << 10, prefault: PrefaultPolicy(strategy)))
        let report = try StackProbeReport(layout: stack.descriptor.layout)
        #expect(report.residentGuardPages == 0)
        if strategy == .none {
            #expect(report.residentUsablePages <= 1)
        } else {
            #expect(report.residentUsablePages == report.usablePages)
        }
    }

    @Test("Bad requests get their named errors and leak nothing")
    func badRequests() throws {
        let allocator = try MmapStackAllocator()
        let cases: [(StackRequest, (StackError) -> Bool)] = [
            (StackRequest(usableSize: 0), { if case .invalidSize = $0.reason { true } else { false } }),
            (StackRequest(usableSize: Int.max), { if case .invalidSize = $0.reason { true } else { false } }),
            (StackRequest(usableSize: 65536, guardSize: 1 << 40), { if case .invalidGuard = $0.reason { true } else { false } }),
            (StackRequest(usableSize: 65536, guardSize: -4096), { if case .invalidGuard = $0.reason { true } else { false } }),
        ]
        for (request, matches) in cases {
            do {
                _ = try allocator.allocate(request)
                Issue.record("\(request) was accepted")
            } catch {
                #expect(matches(error), "\(request) gave \(error)")
                #expect(!error.description.isEmpty)
            }
        }
        #expect(allocator.stats.allocations == 0)
        #expect(allocator.stats.bytesReserved == 0)
    }

    @Test("Writing one byte below the usable bottom dies by SIGSEGV with the diagnostic: label, 1 byte below", needsNoSanitizer, arguments: guardModes)
    func guardTraps(mode: GuardMode) async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) { [mode] in
            try OverflowHandler.install()
            let stack = try MmapStackAllocator(guardMode: mode).allocate(StackRequest(usableSize: 65536))
            ensure(stack.setOverflowLabel("mmap-guard-test"))
            (stack.usableBottom - 1).storeBytes(of: 1, as: UInt8.self)
        }
        try expectDiagnostic(result, label: "mmap-guard-test", distance: 1, guardSize: StackRequest.defaultGuardSize)
    }

    @Test("Writing at the lowest guard byte traps too, a whole guard below", needsNoSanitizer)
    func lowestGuardByteTraps() async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) {
            try OverflowHandler.install()
            let stack = try MmapStackAllocator().allocate(StackRequest(usableSize: 65536))
            ensure(stack.setOverflowLabel("mmap-lowest-guard-byte"))
            UnsafeMutableRawPointer(bitPattern: stack.guardRange.lowerBound)!.storeBytes(of: 1, as: UInt8.self)
        }
        let guardSize = StackRequest.defaultGuardSize
        try expectDiagnostic(result, label: "mmap-lowest-guard-byte", distance: guardSize, guardSize: guardSize)
    }
}
