import CSandbox
@_spi(Benchmarks) import GuardPages
import Glibc
@_spi(Benchmarks) import StackAllocators
import StackTestSupport
import Testing

/// Checks a one-stack-per-region hugetlb stack: huge pages per smaps, populated, guard sound, aligned.
private func expectHugeTLBStack(_ stack: borrowing Stack, usable: Int) throws {
    let layout = stack.descriptor.layout
    #expect(stack.pageSize == HugePages.size)
    #expect(stack.usableSize == usable)
    #expect(layout.usableBottom % UInt(HugePages.size) == 0)
    #expect(stack.guardMechanism == .protNone)
    #expect(stack.guardRange == layout.usableBottom - UInt(StackRequest.defaultGuardSize)..<layout.usableBottom)
    let usage = try Smaps.usage(of: layout.usableRange)
    #expect(usage.kernelPageSizes == [HugePages.size], "usable range: \(usage)")
    #expect(usage.hugetlbBytes == usable, "hugetlb stacks are populated at allocation: \(usage)")
    #expect(try HugePageStackAllocator.hugePageBytes(of: stack) == usable)
    #expect(try Smaps.usage(of: stack.guardRange).kernelPageSizes == [systemPageSize], "the guard is in small pages")
    let probe = try StackProbeReport(layout: layout)
    #expect(probe.guardIsSound, "\(probe)")
    #expect(probe.residentUsablePages == probe.usablePages)
    stack.usableBottom.storeBytes(of: 0xAB, as: UInt8.self)
    (stack.top - 1).storeBytes(of: 0xCD, as: UInt8.self)
}

/// Whether no huge page is mapped in `range` any more: what a released huge-page stack leaves. Memory
/// another test maps there meanwhile is in small pages; a check for "unmapped" would race with it.
private func holdsNoHugePages(_ range: Range<UInt>) throws -> Bool {
    let usage = try Smaps.usage(of: range)
    return usage.hugeBytes == 0 && !usage.kernelPageSizes.contains(HugePages.size)
}

/// Allocates `request` until it throws, into raw storage of `capacity`; returns how many and the error.
private func allocateUntilFailure(
    _ allocator: HugePageStackAllocator, _ request: StackRequest, into storage: UnsafeMutablePointer<Stack>, capacity: Int
) -> (count: Int, error: StackError?) {
    for index in 0..<capacity {
        do {
            (storage + index).initialize(to: try allocator.allocate(request))
        } catch {
            return (index, error)
        }
    }
    return (capacity, nil)
}

/// Every test that takes hugetlb pages is in this one serialized suite, so they never race each other
/// for the shared pool (64 x 2 MiB in CI); each takes a few pages and gives them back. The exhaustion
/// test takes the whole pool in a child process; it assumes no other process uses the pool meanwhile.
@Suite("Huge-page stacks", .serialized)
struct HugePageStackAllocatorTests {
    @Test("Anonymous MAP_HUGETLB: 3 MiB rounds up to two 2 MiB pages, populated, guard below in small pages",
          .enabled(if: HugePages.haveFree(), HugePages.needFree))
    func anonymous() throws {
        let allocator = HugePageStackAllocator()
        let stack = try allocator.allocate(HugePages.request(.anonymous, usable: 3 << 20))
        try expectHugeTLBStack(stack, usable: 4 << 20)
        #expect(allocator.stats.liveByGuard[.protNone] == 1)
        let whole = stack.descriptor.layout.base..<stack.descriptor.layout.top
        stack.release()
        #expect(try holdsNoHugePages(whole))
        #expect(allocator.stats.live == 0 && allocator.stats.bytesReserved == 0)
    }

    @Test("hugetlbfs through libhugetlbfs (mount nil) and through a named mount",
          .enabled(if: HugePages.haveFree() && !HugePages.mounts.isEmpty, HugePages.needMount),
          arguments: [nil] + HugePages.mounts.map(Optional.some))
    func hugetlbfs(mount: String?) throws {
        let allocator = HugePageStackAllocator()
        let stack = try allocator.allocate(HugePages.request(.hugetlbfs(mount: mount), usable: 100 << 10))
        try expectHugeTLBStack(stack, usable: HugePages.size)
        let whole = stack.descriptor.layout.base..<stack.descriptor.layout.top
        stack.release()
        #expect(try holdsNoHugePages(whole))
    }

    @Test("Transparent huge pages: aligned, MADV_HUGEPAGE, populated, and AnonHugePages says how much is huge",
          .enabled(if: HugePages.transparentEnabled, HugePages.needTransparent))
    func transparent() throws {
        let allocator = HugePageStackAllocator()
        let stack = try allocator.allocate(HugePages.request(.transparent, usable: 4 << 20, prefault: PrefaultPolicy(.populate)))
        let layout = stack.descriptor.layout
        #expect(stack.pageSize == HugePageSystem.transparentHugePagePMDSize())
        #expect(layout.usableBottom % UInt(stack.pageSize) == 0)
        #expect(stack.guardMechanism == .protNone)
        let probe = try StackProbeReport(layout: layout)
        #expect(probe.guardIsSound && probe.residentUsablePages == probe.usablePages, "\(probe)")
        let usage = try Smaps.usage(of: layout.usableRange)
        #expect(usage.anonHugeBytes == 4 << 20, "compaction may have failed: \(usage)")
        #expect(try HugePageStackAllocator.hugePageBytes(of: stack) == usage.anonHugeBytes)
    }

    @Test("Where a parent turned transparent huge pages off (PR_SET_THP_DISABLE), a transparent request names it",
          .enabled(if: HugePages.transparentEnabled, HugePages.needTransparent))
    func transparentOffInProcess() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            ensure(fs_test_disable_transparent_huge_pages() == 0, "prctl(PR_SET_THP_DISABLE) failed")
            do throws(StackError) {
                _ = try HugePageStackAllocator().allocate(HugePages.request(.transparent))
                fail("a transparent stack was made in a process without transparent huge pages")
            } catch {
                ensure(error.code == .unsupported && error.description.contains("PR_SET_THP_DISABLE"), "\(error)")
            }
        }
    }

    @Test("In a container without sysfs, a hugetlb stack of the default size is made from the pool /proc/meminfo counts; other sizes and transparent requests name the missing /sys mount, not the kernel",
          needsMountPrivilege)
    func noSysfs() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let haveFree = HugePages.haveFree()
            hideSysfs()
            if haveFree {
                let stack = try HugePageStackAllocator().allocate(HugePages.request(.anonymous))
                ensure(stack.pageSize == HugePageSystem.defaultHugePageSize(), "\(stack.descriptor)")
            }
            let gigantic = StackRequest(usableSize: 1 << 30, pages: .huge(HugePageRequest(.anonymous, pageSize: 1 << 30)))
            for request in [gigantic, HugePages.request(.transparent)] {
                do throws(StackError) {
                    _ = try HugePageStackAllocator().allocate(request)
                    fail("a \(request.pages) stack was made without sysfs")
                } catch {
                    let text = error.description
                    ensure(text.contains("sysfs is not mounted on /sys") && !text.contains("CONFIG_"), text)
                }
            }
        }
    }

    @Test("Transparent huge pages without prefault stay unfaulted until touched",
          .enabled(if: HugePages.transparentEnabled, HugePages.needTransparent))
    func transparentLazy() throws {
        let stack = try HugePageStackAllocator().allocate(HugePages.request(.transparent))
        #expect(try Probe.residentPages(in: stack.descriptor.layout.usableRange) == 0)
        (stack.top - 8).storeBytes(of: 1, as: UInt64.self)
        #expect(try Probe.residentPages(in: stack.descriptor.layout.usableRange) >= 1)
    }

    @Test("Writing one byte below the usable bottom dies by SIGSEGV with the diagnostic naming the stack: anonymous hugetlb", needsNoSanitizer,
          .enabled(if: HugePages.haveFree(), HugePages.needFree))
    func anonymousGuardTraps() async throws {
        try await expectGuardTrap(.anonymous)
    }

    @Test("Writing one byte below the usable bottom dies by SIGSEGV with the diagnostic naming the stack: hugetlbfs", needsNoSanitizer,
          .enabled(if: HugePages.haveFree() && !HugePages.mounts.isEmpty, HugePages.needMount))
    func hugetlbfsGuardTraps() async throws {
        try await expectGuardTrap(.hugetlbfs())
    }

    @Test("Writing one byte below the usable bottom dies by SIGSEGV with the diagnostic naming the stack: transparent huge pages", needsNoSanitizer,
          .enabled(if: HugePages.transparentEnabled, HugePages.needTransparent))
    func transparentGuardTraps() async throws {
        try await expectGuardTrap(.transparent)
    }

    private func expectGuardTrap(_ backing: HugePageRequest.Backing) async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) { [backing] in
            try OverflowHandler.install()
            let stack = try HugePageStackAllocator().allocate(HugePages.request(backing, prefault: PrefaultPolicy(.populate)))
            let readable = try Probe.accessiblePages(in: stack.guardRange)
            ensure(readable == 0, "\(readable) guard pages readable")
            ensure(stack.setOverflowLabel("huge-guard-test"))
            (stack.usableBottom - 1).storeBytes(of: 1, as: UInt8.self)
        }
        try expectDiagnostic(result, label: "huge-guard-test", distance: 1, guardSize: StackRequest.defaultGuardSize)
    }

    @Test("Exhaustion: strict names needed/free/file and leaks nothing; fallback serves small pages, counted, one warning",
          .enabled(if: HugePages.haveFree(), HugePages.needFree))
    func exhaustion() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let (logger, log) = CapturingLogHandler.logger()
            let allocator = HugePageStackAllocator(logger: logger)
            let before = HugePages.free
            let capacity = before + 8
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: capacity)
            defer { storage.deallocate() }
            let (count, error) = allocateUntilFailure(allocator, HugePages.request(.anonymous), into: storage, capacity: capacity)
            guard case .hugePagesExhausted(let pageSize, let needed, let free, _, let controlFile)? = error?.reason else {
                fail("expected hugePagesExhausted after \(count) stacks, got \(String(describing: error))")
            }
            ensure(count >= 1 && count <= before, "\(count) stacks from \(before) free pages")
            ensure(pageSize == HugePages.size && needed == 1 && free == 0, "\(error!)")
            ensure(controlFile == "/proc/sys/vm/nr_hugepages", controlFile)
            ensure(error!.description.contains("/proc/sys/vm/nr_hugepages"), error!.description)
            let held = try HugePages.heldByThisProcess()
            ensure(held == count * HugePages.size, "this process holds \(held) B of hugetlb for \(count) stacks")

            // The pool is empty: fallback gives guarded small-page stacks and warns once.
            for _ in 0..<2 {
                let small = try allocator.allocate(HugePages.request(.anonymous, exhaustion: .fallback))
                ensure(small.pageSize == systemPageSize && small.guardMechanism == .protNone, "\(small.descriptor)")
                let probe = try StackProbeReport(layout: small.descriptor.layout)
                ensure(probe.guardIsSound, "\(probe)")
                small.usableBottom.storeBytes(of: 1, as: UInt8.self)
            }
            ensure(allocator.stats.fallbacks == 2, "\(allocator.stats)")
            ensure(log.count(.warning) == 1, "\(log.all)")

            storage.deinitialize(count: count)
            let leaked = try HugePages.heldByThisProcess()
            ensure(leaked == 0, "\(leaked) B of hugetlb still mapped after release")
            // The pool is shared: another process (verify, run by the command tests) may hold a page
            // for a moment. Ours are back once the pool is at least where it was.
            var waited = 0
            while HugePages.free < before && waited < 5_000 {
                usleep(10_000)
                waited += 10
            }
            ensure(HugePages.free >= before, "pool has \(HugePages.free) free after release, \(before) before")
            ensure(allocator.stats.live == 0 && allocator.stats.bytesReserved == 0, "\(allocator.stats)")
        }
    }

    @Test("An empty 1 GiB pool: strict names the per-size control file; fallback counts and warns once",
          .enabled(if: HugePages.oneGiBPoolEmpty, HugePages.needEmptyOneGiB))
    func oneGiBPoolEmpty() throws {
        let (logger, log) = CapturingLogHandler.logger()
        let allocator = HugePageStackAllocator(logger: logger)
        let file = "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"
        #expect(throws: StackError.hugePagesExhausted(pageSize: 1 << 30, needed: 1, free: 0, node: nil, controlFile: file)) {
            _ = try allocator.allocate(HugePages.request(.anonymous, pageSize: 1 << 30))
        }
        for _ in 0..<3 {
            let stack = try allocator.allocate(HugePages.request(.anonymous, pageSize: 1 << 30, exhaustion: .fallback))
            #expect(stack.pageSize == systemPageSize && stack.usableSize == 2 << 20)
            #expect(try StackProbeReport(layout: stack.descriptor.layout).guardIsSound)
        }
        #expect(allocator.stats.fallbacks == 3)
        #expect(log.count(.warning) == 1, "\(log.all)")
        #expect(allocator.stats.live == 0)
    }

    @Test("Packed stacks share a huge page, carry canaries, and report corruption on check and on release",
          .enabled(if: !HugePages.availableBackings.isEmpty, HugePages.needFree),
          arguments: HugePages.availableBackings)
    func packed(backing: HugePageRequest.Backing) throws {
        let (logger, log) = CapturingLogHandler.logger()
        let allocator = HugePageStackAllocator(logger: logger)
        let request = HugePages.request(backing, usable: 60 << 10, packing: .packed)
        let first = try allocator.allocate(request)
        let second = try allocator.allocate(request)
        let third = try allocator.allocate(request)
        let regionSize = backing == .transparent ? HugePageSystem.transparentHugePagePMDSize() ?? 0 : HugePages.size
        let hugeMask = ~UInt(regionSize - 1)
        let region = first.descriptor.layout.usableBottom & hugeMask
        #expect(second.descriptor.layout.usableBottom & hugeMask == region)
        #expect(third.descriptor.layout.usableBottom & hugeMask == region)
        #expect(first.usableSize == 60 << 10 && first.guardMechanism == .canary && first.guardRange.isEmpty)
        #expect(second.descriptor.layout.usableBottom == first.descriptor.layout.top, "slots are adjacent")
        #expect(try Smaps.usage(of: first.descriptor.layout.usableRange).hugeBytes == regionSize)
        // The region keeps a hardware guard below its lowest stack.
        #expect(region == first.descriptor.layout.usableBottom)
        #expect(try Probe.accessiblePages(in: region - UInt(StackRequest.defaultGuardSize)..<region) == 0)

        try first.checkCanary()
        try second.checkCanary()
        second.usableBottom.storeBytes(of: 0, as: UInt64.self)  // what an overflow of `second` would do
        #expect(throws: StackError.canaryCorrupted(stack: second.descriptor.layout, label: nil)) { try second.checkCanary() }
        try first.checkCanary()
        try third.checkCanary()
        #expect(StackError.canaryCorrupted(stack: second.descriptor.layout, label: nil).description.contains("overwritten"))

        first.release()
        second.release()
        #expect(allocator.stats.canaryCorruptions == 1)
        #expect(log.count(.error) == 1 && log.all.allSatisfy { $0.message.contains("overwritten") }, "\(log.all)")
        #expect(try !Probe.isUnmapped(region..<region + UInt(regionSize)), "the region lives while a stack does")
        third.release()
        #expect(try holdsNoHugePages(region - UInt(StackRequest.defaultGuardSize)..<region + UInt(regionSize)))
        #expect(allocator.stats.live == 0 && allocator.stats.canaryCorruptions == 1)
    }

    @Test("Packed stacks open a second region when the first is full, and reuse the fullest region's free slot first",
          .enabled(if: HugePages.haveFree(), HugePages.needFree))
    func packedRegions() throws {
        let allocator = HugePageStackAllocator()
        let request = HugePages.request(.anonymous, usable: 512 << 10, packing: .packed)
        let slots = HugePages.size / (512 << 10)
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: slots + 1)
        defer { storage.deallocate() }
        for index in 0...slots { (storage + index).initialize(to: try allocator.allocate(request)) }
        let regions = Set((0...slots).map { storage[$0].descriptor.layout.usableBottom & ~UInt(HugePages.size - 1) })
        #expect(regions.count == 2)
        let reused = storage[1].descriptor.layout.usableBottom
        (storage + 1).deinitialize(count: 1)
        (storage + 1).initialize(to: try allocator.allocate(request))
        #expect(storage[1].descriptor.layout.usableBottom == reused)
        try storage[1].checkCanary()
        storage.deinitialize(count: slots + 1)
        #expect(allocator.stats.live == 0 && allocator.stats.canaryCorruptions == 0)
    }

    @Test("Bad input gets named errors, even under the fallback policy, and maps nothing")
    func badInput() throws {
        let allocator = HugePageStackAllocator()
        let sizes = HugePageSystem.hugePageSizes()
        var cases: [(StackRequest, (StackError) -> Bool)] = [
            (HugePages.request(.hugetlbfs(mount: "/tmp"), exhaustion: .fallback),
             { $0 == .notHugeTLBFSMount(path: "/tmp") && $0.description.contains("mount -t hugetlbfs") }),
            (HugePages.request(.hugetlbfs(mount: "/no/such/directory")),
             { $0 == .notHugeTLBFSMount(path: "/no/such/directory") }),
            (HugePages.request(.anonymous, usable: 0), { if case .invalidSize = $0.reason { true } else { false } }),
            (HugePages.request(.anonymous, pageSize: 3000, exhaustion: .fallback),
             { if case .invalidPageSize = $0.reason { true } else { false } }),
        ]
        if !sizes.isEmpty {
            cases.append((HugePages.request(.anonymous, pageSize: 4 << 20, exhaustion: .fallback), {
                guard case .invalidPageSize(4 << 20, let reason) = $0.reason else { return false }
                return sizes.allSatisfy { reason.contains(formatByteCount($0)) }
            }))
            cases.append((HugePages.request(.anonymous, usable: 2 << 20, packing: .packed), {
                if case .invalidSize = $0.reason { true } else { false }
            }))
            cases.append((StackRequest(usableSize: 2 << 20, guardSize: -1, pages: .huge(HugePageRequest(.anonymous))), {
                if case .invalidGuard = $0.reason { true } else { false }
            }))
        }
        if let pmd = HugePageSystem.transparentHugePagePMDSize() {
            cases.append((HugePages.request(.transparent, pageSize: pmd * 2), {
                if case .invalidPageSize = $0.reason { true } else { false }
            }))
        }
        for (request, matches) in cases {
            do {
                _ = try allocator.allocate(request)
                Issue.record("\(request) was accepted")
            } catch {
                #expect(matches(error), "\(request) gave \(error)")
            }
        }
        #expect(allocator.stats.allocations == 0 && allocator.stats.fallbacks == 0)
    }

    @Test("Small-page requests get guarded small-page stacks, not counted as fallbacks")
    func smallPages() throws {
        let allocator = HugePageStackAllocator()
        let stack = try allocator.allocate(StackRequest(usableSize: 100_000, prefault: PrefaultPolicy(.touch)))
        #expect(stack.pageSize == systemPageSize && stack.usableSize == 102_400)
        let probe = try StackProbeReport(layout: stack.descriptor.layout)
        #expect(probe.guardIsSound && probe.residentUsablePages == probe.usablePages)
        #expect(allocator.stats.fallbacks == 0 && allocator.stats.live == 1)
    }
}
