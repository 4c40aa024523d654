@_spi(Benchmarks) import GuardPages
import Logging
@_spi(Benchmarks) import StackAllocators

/// `verify` for `HugePageStackAllocator`: every backing this machine offers (anonymous hugetlb and
/// hugetlbfs at each huge page size, transparent huge pages), each proven huge-page backed by smaps,
/// populated, with a small-page guard that is inaccessible and directly below the aligned usable range;
/// then packed canary stacks and both exhaustion policies. What it cannot check it skips, naming why.
///
/// The huge page pool is shared with other processes: a backing whose pool is empty when its stack is
/// asked for is skipped, not failed, but only when the pool's own sysfs file agrees that it was empty;
/// an allocator that reports exhaustion while the kernel says pages were free fails. The exhaustion
/// checks ask for more pages than the pool has in total, so they hold whatever others do meanwhile, and
/// take nothing from the pool. Leaks are judged by the kernel: HugetlbPages, RSS and map lines of
/// /proc/self/status and /proc/self/maps, with stacks live and after release.
package enum HugePageChecks {
    package static func run(into report: inout VerifyReport) {
        // Deliberate failures (a corrupted canary, a fallback) are checked here, not logged.
        let allocator = HugePageStackAllocator(logger: Logger(label: "fiberstacks.verify", factory: { _ in SwiftLogNoOpLogHandler() }))
        let baseline = try? MemorySnapshot.now()
        let sizes = HugePageSystem.hugePageSizes()
        // Every capability gets a row, so that `--require` fails where no size of its kind is listed.
        if sizes.isEmpty {
            let reason = "no hugetlb pages: " + HugePageSystem.hugePagePoolsMissing
            report.skip("backing", "huge/hugetlb", lacking: .hugetlbAnonymous, reason)
            report.skip("backing", "huge/hugetlbfs", lacking: .hugetlbfs, reason)
        }
        if !sizes.contains(where: { $0 > 2 << 20 }) {
            report.skip("backing", "huge/gigantic", lacking: .giganticPages, giganticMissing(sizes))
        }
        let mounts = HugePageSystem.hugeTLBMounts()
        for size in sizes {
            let pool = HugePageSystem.hugePagePool(pageSize: size)
            for backing in [HugePageRequest.Backing.anonymous, .hugetlbfs()] {
                let name = "huge/\(label(backing))-\(formatByteCount(size))"
                let capability: Capability =
                    size > 2 << 20 ? .giganticPages : backing == .anonymous ? .hugetlbAnonymous : .hugetlbfs
                let ofSize = mounts.filter { $0.pageSize == size }
                if let missing = hugeTLBMissing() {
                    report.skip("backing", name, lacking: capability, missing)
                } else if case .hugetlbfs = backing, ofSize.isEmpty {
                    report.skip("backing", name, lacking: capability, "needs a hugetlbfs mount for \(formatByteCount(size)) pages "
                        + "(mount -t hugetlbfs -o pagesize=\(formatSizeOption(size)) none /dev/hugepages-\(formatSizeOption(size)))")
                } else if case .hugetlbfs = backing, !ofSize.contains(where: \.writable) {
                    report.skip("backing", name, lacking: capability,
                                "\(HugePageSystem.unwritableMountError(ofSize.map(\.path), pageSize: size))")
                } else if let pool, pool.available >= 1 {
                    if let limited = HugeTLBCgroup.missing(pageSize: size) {
                        report.skip("backing", name, lacking: capability, "needs a free \(formatByteCount(size)) huge page: \(limited)")
                    } else {
                        checkBacking(allocator, name: name, request: HugePageRequest(backing, pageSize: size), capability: capability, into: &report)
                    }
                } else {
                    report.skip("backing", name, lacking: capability, pool.map {
                        "needs a free \(formatByteCount(size)) huge page: \($0.controlFile) (\($0.available) free)"
                    } ?? HugePageSystem.hugePagePoolMissing(pageSize: size))
                }
            }
        }
        if let missing = transparentMissing() {
            report.skip("backing", "huge/transparent", lacking: .thp, missing)
        } else {
            checkBacking(allocator, name: "huge/transparent", request: HugePageRequest(.transparent), capability: .thp, into: &report)
        }
        checkPacked(allocator, into: &report)
        checkExhaustion(allocator, into: &report)
        report.check("no-leak", "huge") {
            try Sanitizer.requireProcessAccounting()
            guard let baseline else { throw CheckError(description: "could not read /proc/self/status before the huge-page checks") }
            let after = try MemorySnapshot.now()
            return (after.hugetlbKiB == baseline.hugetlbKiB && after.mapLines <= baseline.mapLines,
                    "after every huge-page check: \(after); before them: \(baseline)")
        }
    }

    /// Why no huge page size above 2 MiB is known, where the kernel lists `sizes`.
    static func giganticMissing(_ sizes: [Int]) -> String {
        guard HugePageSystem.sysfsListsPools else {
            return "no huge page size above 2 MiB is known: " + HugePageSystem.hugePagePoolsMissing
        }
        #if arch(x86_64)
        let needs = "1 GiB pages need a CPU with pdpe1gb (/proc/cpuinfo)"
        #else
        let needs = "larger sizes depend on the kernel's base page size"
        #endif
        return "the kernel offers no huge page size above 2 MiB (\(HugePageSystem.hugePagePoolDirectory) lists "
            + "\(sizes.map(formatByteCount).joined(separator: ", "))): \(needs)"
    }

    /// Why this process cannot have hugetlb stacks whatever the pools hold (they are populated at
    /// allocation with `MADV_POPULATE_WRITE`), or nil.
    static func hugeTLBMissing() -> String? {
        Prefault.populateWrite.missing.map { "hugetlb stacks are populated at allocation: \($0)" }
    }

    /// Why this process cannot have a hugetlb stack of the default page size now, or nil.
    package static func defaultHugeTLBMissing() -> String? {
        let size = HugePageSystem.defaultHugePageSize()
        if let missing = hugeTLBMissing() { return missing }
        guard (HugePageSystem.hugePagePool(pageSize: size)?.available ?? 0) > 0 else {
            return "needs a free default-size huge page (/proc/sys/vm/nr_hugepages)"
        }
        return HugeTLBCgroup.missing(pageSize: size).map { "needs a free default-size huge page: \($0)" }
    }

    /// Why this process cannot have transparent huge page stacks, or nil.
    static func transparentMissing() -> String? {
        switch HugePageSystem.transparentHugePageMode() {
        case nil:
            "no transparent huge pages: " + HugePageSystem.transparentHugePagesMissing
        case "never": "THP mode is never (\(HugePageSystem.transparentHugePageDirectory)/enabled)"
        default: HugePageSystem.transparentAdvice.missing ?? HugePageSystem.transparentHugePagesDisabledInProcess()
        }
    }

    /// One stack per region: allocated populated, probed (guard, residency), measured (smaps), released.
    private static func checkBacking(
        _ allocator: HugePageStackAllocator, name: String, request: HugePageRequest, capability: Capability,
        into report: inout VerifyReport
    ) {
        let stack: Stack
        // Transparent huge pages: several pages, so "huge-backed" shows the whole range, not one page.
        let size = request.backing == .transparent ? 8 << 20 : 2 << 20
        let before: MemorySnapshot
        do {
            before = try MemorySnapshot.now()
            stack = try allocator.allocate(StackRequest(usableSize: size, pages: .huge(request), prefault: PrefaultPolicy(.populate)))
        } catch {
            if case .hugeTLBCgroupLimitReached(let file, let pageSize, _, _, let needed) = error.reason {
                // Believe the allocator only when the cgroup's own files agree.
                if HugeTLBCgroup.reached(pageSize: pageSize, needed: needed) != nil {
                    report.skip("backing", name, lacking: capability, "the hugetlb cgroup limit was reached meanwhile: \(error)")
                } else {
                    report.add("allocate", name, false, "the allocator reported the hugetlb cgroup limit \(file) reached, "
                        + "but no hugetlb cgroup limit of this process is short of \(needed) pages now")
                }
                return
            }
            guard case .hugePagesExhausted(let pageSize, let needed, let free, _, let file) = error.reason else {
                report.add("allocate", name, false, "error: \(error)")
                return
            }
            // Believe the allocator only when the kernel's own count agrees.
            let pool = HugePageSystem.hugePagePool(pageSize: pageSize)
            let counts = pool?.countedIn ?? HugePageSystem.hugePagePoolMissing(pageSize: pageSize)
            if let kernelFree = pool?.available, kernelFree < needed {
                report.skip("backing", name, lacking: capability, "the pool emptied meanwhile (\(counts): \(kernelFree) free, \(needed) needed; raise \(file))")
            } else {
                report.add("allocate", name, false, "the allocator reported hugePagesExhausted (\(free) free, \(needed) needed) but "
                    + "the kernel's free pages less reserved ones (\(counts)) are \(pool.map { String($0.available) } ?? "unreadable")")
            }
            return
        }
        StackChecks.run(stack, allocator: name, prefault: .populate, into: &report)
        let layout = stack.descriptor.layout
        let mechanism = stack.guardMechanism
        report.check("huge-backed", name) {
            let usage = try Smaps.usage(of: layout.usableRange)
            let hugetlb = request.backing != .transparent
            // Transparent huge pages: every whole huge page of the usable range must be one (AnonHugePages).
            let huge = UInt(layout.pageSize)
            let alignedBottom = (layout.usableBottom + huge - 1) / huge * huge
            let alignedBytes = layout.top > alignedBottom ? Int((layout.top - alignedBottom) / huge * huge) : 0
            let passed = hugetlb ? usage.hugetlbBytes == layout.sizes.usableSize && usage.kernelPageSizes == [layout.pageSize]
                : alignedBytes > 0 && usage.anonHugeBytes >= alignedBytes
            return (passed, "\(usage.hugeBytes) of \(layout.sizes.usableSize) B in huge pages, \(alignedBytes) B huge-page aligned "
                + "(smaps: KernelPageSize \(usage.kernelPageSizes.map(formatByteCount)), AnonHugePages \(usage.anonHugeBytes) B)")
        }
        report.check("kernel-accounts-live", name) {
            let live = try MemorySnapshot.now()
            let hugetlb = (live.hugetlbKiB - before.hugetlbKiB) << 10
            let resident = (live.residentKiB - before.residentKiB) << 10
            let passed = request.backing == .transparent ? resident >= layout.sizes.usableSize : hugetlb == layout.sizes.usableSize
            return (passed, "with the stack live: HugetlbPages +\(hugetlb) B, RSS +\(resident) B, for \(layout.sizes.usableSize) usable B")
        }
        report.check("guard-below-huge", name) {
            let guardPages = try Smaps.usage(of: layout.guardRange).kernelPageSizes
            let aligned = layout.usableBottom % UInt(layout.pageSize) == 0
            return (aligned && guardPages == [systemPageSize] && mechanism == .protNone,
                "usable bottom \(aligned ? "" : "not ")\(formatByteCount(layout.pageSize))-aligned; "
                    + "\(layout.guardRange.count) B \(mechanism) guard in \(guardPages.map(formatByteCount)) pages")
        }
        let whole = layout.base..<layout.top
        stack.release()
        report.check("release-unmaps/populate", name) {
            try Sanitizer.requireProcessAccounting()
            let after = try MemorySnapshot.now()
            return (try Probe.isUnmapped(whole) && after.hugetlbKiB == before.hugetlbKiB && after.mapLines <= before.mapLines,
                    "after release: guard and usable range unmapped (mincore: ENOMEM); HugetlbPages \(after.hugetlbKiB) KiB "
                        + "(\(before.hugetlbKiB) before), \(after.mapLines) map lines (\(before.mapLines) before)")
        }
    }

    /// Packed stacks: share one huge page, carry canaries that `check` and release verify.
    private static func checkPacked(_ allocator: HugePageStackAllocator, into report: inout VerifyReport) {
        let backing: HugePageRequest.Backing
        switch (defaultHugeTLBMissing(), transparentMissing()) {
        case (nil, _): backing = .anonymous
        case (_, nil): backing = .transparent
        case (let hugeTLB?, let transparent?):
            report.skip("packed-canary", "huge/packed", lacking: .hugetlbAnonymous, "\(hugeTLB); or THP: \(transparent)")
            return
        }
        let name = "huge/packed-\(label(backing))"
        let request = StackRequest(usableSize: 64 << 10, pages: .huge(HugePageRequest(backing, packing: .packed)))
        report.check("packed-canary", name) {
            let first = try allocator.allocate(request)
            let second = try allocator.allocate(request)
            let shared = second.descriptor.layout.usableBottom == first.descriptor.layout.top
            let intact = (try? first.checkCanary()) != nil && (try? second.checkCanary()) != nil
            let before = allocator.stats.canaryCorruptions
            second.usableBottom.storeBytes(of: 0, as: UInt64.self)
            let detected = (try? second.checkCanary()) == nil
            second.release()
            let onRelease = allocator.stats.canaryCorruptions == before + 1
            let kind = first.guardMechanism
            return (shared && intact && detected && onRelease && kind == .canary,
                "adjacent in one huge page: \(shared), guard \(kind), canaries intact: \(intact), "
                    + "overwrite found by check: \(detected), on release: \(onRelease)")
        }
    }

    /// Both policies against a request for more pages than the pool holds in total.
    private static func checkExhaustion(_ allocator: HugePageStackAllocator, into report: inout VerifyReport) {
        let size = HugePageSystem.defaultHugePageSize()
        guard let pool = HugePageSystem.hugePagePool(pageSize: size) else {
            report.skip("exhaustion", "huge", lacking: .hugetlbAnonymous, HugePageSystem.hugePagePoolMissing(pageSize: size))
            return
        }
        let needed = pool.total + (pool.overcommit ?? 0) + 1
        guard needed * size <= StackSizes.maximumUsableSize else {
            report.skip("exhaustion", "huge", lacking: .hugetlbAnonymous, "the pool (\(pool.total) pages, \(pool.controlFile)) is larger than the largest stack")
            return
        }
        let request = HugePageRequest(.anonymous, pageSize: size)
        report.check("exhaustion-strict", "huge") {
            guard let error = allocationError(allocator, StackRequest(usableSize: needed * size, pages: .huge(request))) else {
                return (false, "a stack of \(needed) pages from a pool of \(pool.total) was granted")
            }
            guard case .hugePagesExhausted(_, let reportedNeed, let free, _, let file) = error.reason else { throw error }
            // The kernel's own count must confirm that the pool could not serve the request.
            guard let kernel = HugePageSystem.hugePagePool(pageSize: size) else {
                throw CheckError(description: "the pool is gone: \(HugePageSystem.hugePagePoolMissing(pageSize: size))")
            }
            return (reportedNeed == needed && file == pool.controlFile && kernel.free < needed,
                    "hugePagesExhausted: \(needed) needed, \(free) free (\(kernel.countedIn): \(kernel.free)), raise \(file)")
        }
        report.check("exhaustion-fallback", "huge") {
            var fallback = request
            fallback.exhaustion = .fallback
            let before = allocator.stats.fallbacks
            let stack = try allocator.allocate(StackRequest(usableSize: needed * size, pages: .huge(fallback)))
            let probe = try StackProbeReport(layout: stack.descriptor.layout)
            return (stack.pageSize == systemPageSize && probe.guardIsSound && allocator.stats.fallbacks == before + 1,
                "small-page stack (\(formatByteCount(stack.pageSize)) pages, \(stack.guardMechanism) guard), counted in stats.fallbacks")
        }
    }

    /// The error `allocate(request)` throws, or nil when it succeeds (the stack is released at once).
    private static func allocationError(_ allocator: HugePageStackAllocator, _ request: StackRequest) -> StackError? {
        do {
            _ = try allocator.allocate(request)
            return nil
        } catch {
            return error
        }
    }

    private static func label(_ backing: HugePageRequest.Backing) -> String {
        switch backing {
        case .anonymous: "anonymous"
        case .hugetlbfs: "hugetlbfs"
        case .transparent: "transparent"
        }
    }
}
