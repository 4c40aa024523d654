@_spi(Benchmarks) import GuardPages
import Glibc
@_spi(Benchmarks) import OverflowDetection
@_spi(Benchmarks) import StackAllocators
import StackTestSupport
import Testing

@Suite("SlabStackAllocator")
struct SlabStackAllocatorTests {
    static var guardModes: [GuardMode] {
        GuardMode.forcible
    }

    @Test("A slab stack is guarded and writable; a released slot comes back zeroed, guard kept, nothing resident",
          arguments: guardModes)
    func lifecycle(mode: GuardMode) throws {
        let slab = try SlabStackAllocator(.init(stacksPerRegion: 16, guardMode: mode))
        let request = StackRequest(usableSize: 64 << 10)
        let first = try slab.allocate(request)
        #expect(first.usableSize == 64 << 10)
        #expect(first.guardRange.count == 64 << 10)
        #expect(first.guardMechanism == (mode == .lightweight ? .lightweight : .protNone))
        #expect(try Probe.accessiblePages(in: first.guardRange) == 0)
        memset(first.usableBottom, 0xAB, first.usableSize)
        let base = first.descriptor.layout.base
        let bottom = first.descriptor.layout.usableBottom
        #expect(GuardRegistry.entry(forStackAt: bottom)?.guardRange == first.guardRange, "the live stack's guard is registered")
        first.release()
        #expect(slab.stats.cached == 1)
        #expect(GuardRegistry.entry(forStackAt: bottom) == nil, "the stack's registration went with it")

        let again = try slab.allocate(request)
        #expect(again.descriptor.layout.base == base, "the released slot is reused first")
        let report = try StackProbeReport(layout: again.descriptor.layout)
        #expect(report.residentUsablePages == 0, "release discarded the pages (MADV_DONTNEED)")
        #expect(report.guardIsSound)
        let bytes = UnsafeRawBufferPointer(start: again.usableBottom, count: again.usableSize)
        #expect(bytes.allSatisfy { $0 == 0 })
        #expect(slab.stats.live == 1)
        #expect(slab.stats.cached == 0)
        #expect(slab.stats.liveByGuard[again.guardMechanism] == 1)
    }

    @Test("Strict overcommit (vm.overcommit_memory=2) charges only carved slots: the rest of a region stays PROT_NONE",
          arguments: [GuardMode?.none] + guardModes.map(Optional.some))
    func strictOvercommitChargesCarvedSlots(mode: GuardMode?) throws {
        // nil: a zero guard.
        var configuration = SlabStackAllocator.Configuration(
            usableSize: 64 << 10, guardSize: mode == nil ? 0 : 64 << 10, guardMode: mode ?? .automatic)
        configuration.strictOvercommitOverride = true
        let slab = try SlabStackAllocator(configuration)
        let stacks = try HeldStacks(3, from: slab, request: StackRequest(usableSize: 64 << 10, guardSize: slab.sizes.guardSize))
        stacks.fill()
        let region = stacks.bases[0]..<(stacks.bases[0] + UInt(slab.regionSize))
        let writable = try KernelMaps.mappedBytes(in: region, permission: "w")
        let carvedAtMost = (slab.guardMechanism == .lightweight ? SlabStackAllocator.guardWindow : 3) * slab.sizes.total
        #expect(writable >= 3 * slab.sizes.usableSize && writable <= carvedAtMost,
                "\(writable) writable bytes of a \(slab.regionSize)-byte region with 3 stacks carved")
        #expect(try KernelMaps.mappedBytes(in: region) == slab.regionSize, "the whole region stays reserved")
        for layout in stacks.layouts {
            #expect(try Probe.accessiblePages(in: layout.guardRange) == 0, "a guard is inaccessible")
        }
        stacks.release(3)
    }

    @Test("Whatever the overcommit policy, a slab's reservation charges nothing beyond its carved slots", arguments: guardModes)
    func reservationUncharged(mode: GuardMode) throws {
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10, guardMode: mode))
        let stacks = try HeldStacks(3, from: slab)
        let region = stacks.bases[0]..<(stacks.bases[0] + UInt(slab.regionSize))
        let carvedAtMost = (slab.guardMechanism == .lightweight ? SlabStackAllocator.guardWindow : 3) * slab.sizes.total
        let charged = try KernelMaps.chargedBytes(in: region)
        #expect(charged <= carvedAtMost, "\(charged) bytes of a \(slab.regionSize)-byte region charged with 3 stacks carved")
        stacks.release(3)
    }

    @Test("Stacks fill regions in order; empty regions beyond the retained one are unmapped; trim unmaps the rest")
    func regions() throws {
        let slab = try SlabStackAllocator(.init(usableSize: 16 << 10, guardSize: 4096, stacksPerRegion: 8))
        let regionSize = 8 * (20 << 10)
        #expect(slab.regionSize == regionSize)
        #expect(slab.stats.bytesReserved == 0, "nothing is mapped before the first allocation")
        let count = 20
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
        defer { storage.deallocate() }
        for index in 0..<count {
            (storage + index).initialize(to: try slab.allocate(StackRequest(usableSize: 16 << 10, guardSize: 4096)))
        }
        #expect(slab.stats.bytesReserved == 3 * regionSize)
        #expect(slab.stats.live == count)
        storage.deinitialize(count: count)
        let stats = slab.stats
        #expect(stats.live == 0)
        #expect(stats.bytesReserved == regionSize, "one empty region is retained")
        #expect(slab.trim() == 1)
        #expect(slab.stats.bytesReserved == 0)
        #expect(slab.stats.cached == 0)
    }

    @Test("Smaller requests get the slab's size; larger ones, and bad ones, get typed errors and leak nothing")
    func requests() throws {
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10, guardSize: 16 << 10))
        let small = try slab.allocate(StackRequest(usableSize: 1000, guardSize: 4096))
        #expect(small.usableSize == 64 << 10)
        #expect(small.guardRange.count == 16 << 10)
        small.release()
        let rejected: [(StackRequest, (StackError) -> Bool)] = [
            (StackRequest(usableSize: 128 << 10, guardSize: 16 << 10), { if case .invalidSize = $0.reason { true } else { false } }),
            (StackRequest(usableSize: 64 << 10, guardSize: 64 << 10), { if case .invalidGuard = $0.reason { true } else { false } }),
            (StackRequest(usableSize: 0), { if case .invalidSize = $0.reason { true } else { false } }),
            (StackRequest(usableSize: 4096, guardSize: -1), { if case .invalidGuard = $0.reason { true } else { false } }),
        ]
        for (request, matches) in rejected {
            do {
                _ = try slab.allocate(request)
                Issue.record("\(request) was accepted")
            } catch {
                #expect(matches(error), "\(request) gave \(error)")
            }
        }
        #expect(slab.stats.live == 0)
        #expect(slab.stats.allocations == 1)
    }

    @Test("Each invalid configuration field is an error naming the field, its value and what it accepts", arguments: [
        (SlabStackAllocator.Configuration(usableSize: 0), "usableSize", "0", "1...4294967296"),
        (SlabStackAllocator.Configuration(guardSize: -4096), "guardSize", "-4096", "0...67108864"),
        (SlabStackAllocator.Configuration(stacksPerRegion: 0), "stacksPerRegion", "0", "1...8388608"),
        (SlabStackAllocator.Configuration(usableSize: 1 << 30, stacksPerRegion: 4096), "stacksPerRegion", "4096", "1...1023"),
        (SlabStackAllocator.Configuration(retainedEmptyRegions: -1), "retainedEmptyRegions", "-1", "zero or positive"),
        (SlabStackAllocator.Configuration(discardBatch: 0), "discardBatch", "0", "1...64"),
        (SlabStackAllocator.Configuration(discardBatch: 65), "discardBatch", "65", "1...64"),
        (SlabStackAllocator.Configuration(mapCountReserve: -1), "mapCountReserve", "-1", "zero or positive"),
    ])
    func badConfiguration(_ configuration: SlabStackAllocator.Configuration, field: String, value: String, allowed: String) {
        expectInvalidConfiguration(type: "SlabStackAllocator.Configuration", field: field, value: value, allowed: allowed) { () throws(StackError) in
            _ = try SlabStackAllocator(configuration)
        }
    }

    @Test("Prefault policies decide residency; guards are never resident", arguments: PrefaultStrategy.allCases)
    func prefault(strategy: PrefaultStrategy) throws {
        let slab = try SlabStackAllocator(.init(usableSize: 256 << 10))
        let stack = try slab.allocate(StackRequest(usableSize: 256 << 10, prefault: PrefaultPolicy(strategy)))
        let report = try StackProbeReport(layout: stack.descriptor.layout)
        #expect(report.residentGuardPages == 0)
        #expect(report.residentUsablePages == (strategy == .none ? 0 : report.usablePages))
        #expect(try slab.residentBytes() == report.residentUsablePages * systemPageSize)
    }

    @Test("Resident bytes count exactly the touched pages")
    func residentBytes() throws {
        let slab = try SlabStackAllocator(.init(stacksPerRegion: 64))
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: 100)
        defer { storage.deallocate() }
        for index in 0..<100 {
            (storage + index).initialize(to: try slab.allocate(StackRequest(usableSize: 64 << 10)))
            if index % 10 == 0 { (storage[index].top - 1).storeBytes(of: 1, as: UInt8.self) }
        }
        let stats = try slab.measuredStats()
        #expect(stats.bytesResident == 10 * systemPageSize)
        #expect(stats.bytesReserved == 2 * 64 * (128 << 10))
        storage.deinitialize(count: 100)
        #expect(try slab.residentBytes() == 0)
    }

    @Test("Several threads allocating and releasing across region boundaries: counts balance, no slot is shared",
          arguments: [false, true])
    func concurrency(strictOvercommit: Bool) throws {
        var configuration = SlabStackAllocator.Configuration(usableSize: 16 << 10, guardSize: 4096, stacksPerRegion: 32)
        configuration.strictOvercommitOverride = strictOvercommit
        let slab = try SlabStackAllocator(configuration)
        let threads = 4
        let iterations = 500
        let workers = (0..<threads).map { worker in
            JoinableThread {
                let held = UnsafeMutablePointer<Stack>.allocate(capacity: 40)
                defer { held.deallocate() }
                for iteration in 0..<iterations {
                    let count = 1 + (iteration * 7 + worker) % 40
                    for index in 0..<count {
                        (held + index).initialize(to: try! slab.allocate(StackRequest(usableSize: 16 << 10, guardSize: 4096)))
                        // A slot shared with another thread would see another worker's mark here.
                        let top = held[index].top - 8
                        precondition(top.load(as: UInt64.self) == 0, "a slot handed out twice or not discarded")
                        top.storeBytes(of: UInt64(worker + 1), as: UInt64.self)
                    }
                    held.deinitialize(count: count)
                }
            }
        }
        for worker in workers { worker.join() }
        let stats = slab.stats
        let expected = (0..<threads).reduce(0) { total, worker in
            total + (0..<iterations).reduce(0) { $0 + 1 + ($1 * 7 + worker) % 40 }
        }
        #expect(stats.allocations == expected)
        #expect(stats.releases == expected)
        #expect(stats.live == 0)
        #expect(stats.bytesReserved <= 2 * slab.regionSize, "empty regions beyond the retained one were unmapped")
        #expect(try slab.residentBytes() == 0)
    }

    @Test("Writing one byte below a slab stack's usable bottom dies by SIGSEGV with the diagnostic naming it", needsNoSanitizer, arguments: guardModes)
    func guardTraps(mode: GuardMode) async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) { [mode] in
            try OverflowHandler.install()
            let slab = try SlabStackAllocator(.init(guardMode: mode))
            let first = try slab.allocate(StackRequest(usableSize: 64 << 10))
            let second = try slab.allocate(StackRequest(usableSize: 64 << 10))
            // The second stack's guard lies right above the first stack's top, in the same region.
            ensure(second.descriptor.layout.base == first.descriptor.layout.top)
            ensure(first.setOverflowLabel("slab-first") && second.setOverflowLabel("slab-second"))
            (second.usableBottom - 1).storeBytes(of: 1, as: UInt8.self)
        }
        try expectDiagnostic(result, label: "slab-second", distance: 1, guardSize: StackRequest.defaultGuardSize)
    }
}
