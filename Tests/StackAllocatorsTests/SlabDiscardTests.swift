import CStackSupport
@_spi(Benchmarks) import GuardPages
import Glibc
@_spi(Benchmarks) import StackAllocators
import StackTestSupport
import Testing

@Suite("Slab discards in batches")
struct SlabDiscardTests {
    @Test("Released stacks keep their pages until their batch is due; then every one is discarded; trim discards the rest",
          arguments: GuardMode.forcible)
    func batches(mode: GuardMode) throws {
        let slab = try SlabStackAllocator(.init(stacksPerRegion: 64, guardMode: mode, discardBatch: 8))
        let stacks = try HeldStacks(10, from: slab)
        stacks.touchTops()
        let page = systemPageSize
        stacks.release(7)
        #expect(try slab.residentBytes() == 10 * page, "seven released stacks wait for their batch with their pages")
        #expect(slab.stats.cached == 7)
        stacks.release(1)
        #expect(try slab.residentBytes() == 2 * page, "the eighth release discarded all eight: only the live stacks are resident")
        #expect(slab.stats.cached == 8)

        stacks.release(1)
        #expect(try slab.residentBytes() == 2 * page, "one released stack waits")
        slab.trim()
        #expect(try slab.residentBytes() == page, "trim discarded it")
        stacks.release(1)
        #expect(try slab.residentBytes() == 0, "the release that empties a region discards at once")
        #expect(slab.stats.releaseFailures == 0)
    }

    @Test("Neighbouring released stacks are discarded together: their pages go, every guard between them holds",
          arguments: GuardMode.forcible)
    func neighboursTogether(mode: GuardMode) throws {
        let slab = try SlabStackAllocator(.init(stacksPerRegion: 64, guardMode: mode, discardBatch: 16))
        let keep = try slab.allocate(StackRequest(usableSize: 64 << 10))  // keeps the region mapped
        let stacks = try HeldStacks(16, from: slab)
        let layouts = stacks.layouts
        #expect(zip(layouts, layouts.dropFirst()).allSatisfy { $1.base == $0.base + UInt($0.sizes.total) }, "neighbours")
        stacks.fill()
        stacks.release(16)
        #expect(try slab.residentBytes() == 0, "the batch was discarded")
        for layout in layouts {
            let report = try StackProbeReport(layout: layout)
            #expect(report.residentUsablePages == 0 && report.guardIsSound, "0x\(String(layout.base, radix: 16)): \(report)")
        }
        let again = try HeldStacks(16, from: slab)
        #expect(Set(again.bases) == Set(layouts.map(\.base)) && again.allZero, "the same slots, reading zeros")
        again.release(16)
        keep.release()
    }

    @Test("A stack reused before its batch is due is discarded on its own: its next owner reads zeros", arguments: GuardMode.forcible)
    func reuseBeforeBatch(mode: GuardMode) throws {
        let slab = try SlabStackAllocator(.init(stacksPerRegion: 64, guardMode: mode))
        let keep = try slab.allocate(StackRequest(usableSize: 64 << 10))  // keeps the region occupied
        let first = try slab.allocate(StackRequest(usableSize: 64 << 10))
        memset(first.usableBottom, 0xAB, first.usableSize)
        let base = first.descriptor.layout.base
        first.release()
        #expect(try slab.residentBytes() == 16 * systemPageSize, "the released stack waits for its batch, pages and all")
        let again = try slab.allocate(StackRequest(usableSize: 64 << 10))
        #expect(again.descriptor.layout.base == base, "the most recently released stack is reused first")
        let report = try StackProbeReport(layout: again.descriptor.layout)
        #expect(report.residentUsablePages == 0 && report.guardIsSound)
        #expect(UnsafeRawBufferPointer(start: again.usableBottom, count: again.usableSize).allSatisfy { $0 == 0 })
        keep.release()
    }

    @Test("With lightweight guards a new slot is carved with the slots above it, all guarded by one call, handed out in address order",
          .enabled(if: GuardInstaller.lightweightGuardsSupported, "needs MADV_GUARD_INSTALL (Linux 6.13 or later)"))
    func guardWindow() throws {
        let window = SlabStackAllocator.guardWindow
        let slab = try SlabStackAllocator(.init(stacksPerRegion: 2 * window, guardMode: .lightweight))
        let first = try slab.allocate(StackRequest(usableSize: 64 << 10))
        let stride = UInt(first.descriptor.layout.sizes.total)
        let guardSize = UInt(first.descriptor.layout.sizes.guardSize)
        let base = first.descriptor.layout.base
        for slot in 1..<window {
            let guardRange = (base + UInt(slot) * stride)..<(base + UInt(slot) * stride + guardSize)
            #expect(try Probe.accessiblePages(in: guardRange) == 0, "slot \(slot)'s guard was installed with the first")
        }
        // Not yet guarded; under strict overcommit, not even writable.
        let beyond = base + UInt(window) * stride
        let waits = Overcommit.isStrict
            ? try KernelMaps.mappedBytes(in: beyond..<(beyond + stride), permission: "w") == 0
            : try Probe.accessiblePages(in: beyond..<(beyond + guardSize)) > 0
        #expect(waits, "the next window waits for its first allocation")
        let rest = try HeldStacks(window - 1, from: slab)
        #expect(rest.bases == (1..<window).map { base + UInt($0) * stride }, "handed out lowest first")
        #expect(slab.stats.cached == 0, "slots carved ahead are not released stacks")
        first.release()
    }

    @Test("Where the kernel refuses batches, each stack is discarded on its own, logged once; a stack neither discarded nor zeroed stays out of reuse",
          needsNoSanitizer)
    func refusedBatch() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let (logger, log) = CapturingLogHandler.logger()
            let slab = try SlabStackAllocator(.init(stacksPerRegion: 64, discardBatch: 4), logger: logger)
            let keep = try slab.allocate(StackRequest(usableSize: 64 << 10))
            FailureInjection.fail(.adviseRanges(Int32(FS_MADV_DONTNEED)), with: .invalidArgument)
            for _ in 0..<2 {
                // Every other stack of eight: each batch is four ranges, not one.
                let stacks = try (0..<8).map { _ in try HeldStacks(1, from: slab) }
                for stack in stacks { stack.fill() }
                for index in stride(from: 0, to: 8, by: 2) { stacks[index].release(1) }
            }
            let resident = try slab.residentBytes()
            ensure(resident == 0, "every released stack was discarded: \(resident) bytes stay")
            ensure(log.count(.notice) == 1, "the fallback is logged once: \(log.all)")
            keep.release()

            // Four neighbours, discarded as one range, fail; so does the first of them discarded again
            // alone, and so does reading its residency to zero it instead: that slot is never handed out
            // again, the other three are.
            let fresh = try SlabStackAllocator(.init(stacksPerRegion: 64, discardBatch: 4), logger: logger)
            let keepFresh = try fresh.allocate(StackRequest(usableSize: 64 << 10))
            let stacks = try HeldStacks(4, from: fresh)
            let bases = Set(stacks.bases)
            FailureInjection.fail(.advise(Int32(FS_MADV_DONTNEED)), with: .invalidArgument, times: 2)
            FailureInjection.fail(.residency, with: .noMemory)
            stacks.release(4)
            FailureInjection.reset()
            ensure(fresh.stats.releaseFailures == 1 && log.count(.error) == 1, "the failed discard is counted and logged: \(log.all)")
            let next = try HeldStacks(8, from: fresh)
            ensure(Set(next.bases).intersection(bases).count == 3, "three of the four slots are reused")
            keepFresh.release()
        }
    }
}
