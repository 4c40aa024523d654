import Logging
import StackAllocators

/// `verify` for `HugePageStackAllocator`: every backing this machine offers (anonymous hugetlb and
/// hugetlbfs at each huge page size, transparent huge pages), each proven huge-page backed by smaps,
/// populated, with a small-page guard that is inaccessible and directly below the aligned usable range;
/// then packed canary stacks and both exhaustion policies. What it cannot check it skips, naming why.
///
/// The huge page pool is shared with other processes: a backing whose pool is empty when its stack is
/// asked for is skipped, not failed. The exhaustion checks ask for more pages than the pool has in
/// total, so they hold whatever others do meanwhile, and take nothing from the pool.
enum HugePageChecks {
    static func run(into report: inout VerifyReport) {
        // Deliberate failures (a corrupted canary, a fallback) are checked here, not logged.
        let allocator = HugePageStackAllocator(logger: Logger(label: "fiberstacks.verify", factory: { _ in SwiftLogNoOpLogHandler() }))
        let sizes = MachineCapabilities.hugePageSizes()
        if sizes.isEmpty {
            report.add("backing", "huge/hugetlb", true, "skipped: this kernel has no hugetlb pages (/sys/kernel/mm/hugepages; CONFIG_HUGETLBFS)")
        }
        let mounts = MachineCapabilities.hugeTLBMounts()
        for size in sizes {
            let short: String? = MachineCapabilities.hugePagePool(pageSize: size).map { pool in
                pool.available < 1 ? "skipped: needs a free \(formatByteCount(size)) huge page: \(pool.controlFile) (0 free)" : nil
            } ?? "skipped: no \(formatByteCount(size)) pool"
            for backing in [HugePageRequest.Backing.anonymous, .hugetlbfs()] {
                let name = "huge/\(label(backing))-\(formatByteCount(size))"
                if case .hugetlbfs = backing, !mounts.contains(where: { $0.pageSize == size }) {
                    report.add("backing", name, true, "skipped: needs a hugetlbfs mount for \(formatByteCount(size)) pages "
                        + "(mount -t hugetlbfs -o pagesize=\(formatSizeOption(size)) none /dev/hugepages-\(formatSizeOption(size)))")
                } else if let short {
                    report.add("backing", name, true, short)
                } else {
                    checkBacking(allocator, name: name, request: HugePageRequest(backing, pageSize: size), into: &report)
                }
            }
        }
        switch MachineCapabilities.transparentHugePageMode() {
        case nil:
            report.add("backing", "huge/transparent", true, "skipped: no transparent huge pages (\(MachineCapabilities.transparentHugePageDirectory) missing)")
        case "never":
            report.add("backing", "huge/transparent", true, "skipped: THP mode is never (\(MachineCapabilities.transparentHugePageDirectory)/enabled)")
        default:
            checkBacking(allocator, name: "huge/transparent", request: HugePageRequest(.transparent), into: &report)
        }
        checkPacked(allocator, into: &report)
        checkExhaustion(allocator, into: &report)
        report.check("no-leak", "huge") {
            let stats = allocator.stats
            return (stats.live == 0 && stats.bytesReserved == 0 && stats.releaseFailures == 0, "\(stats.live) live stacks, "
                + "\(stats.bytesReserved) B reserved, \(stats.releaseFailures) failed releases after all huge-page checks")
        }
    }

    /// One stack per region: allocated populated, probed (guard, residency), measured (smaps), released.
    private static func checkBacking(
        _ allocator: HugePageStackAllocator, name: String, request: HugePageRequest, into report: inout VerifyReport
    ) {
        let stack: Stack
        do {
            stack = try allocator.allocate(StackRequest(usableSize: 2 << 20, pages: .huge(request), prefault: PrefaultPolicy(.populate)))
        } catch .hugePagesExhausted(_, let needed, let free, _, let file) {
            report.add("backing", name, true, "skipped: the pool emptied meanwhile (\(free) free, \(needed) needed; \(file))")
            return
        } catch {
            report.add("allocate", name, false, "error: \(error)")
            return
        }
        StackChecks.run(stack, allocator: name, prefault: .populate, into: &report)
        let layout = stack.descriptor.layout
        let mechanism = stack.guardMechanism
        report.check("huge-backed", name) {
            let usage = try Smaps.usage(of: layout.usableRange)
            let hugetlb = request.backing != .transparent
            // Transparent huge pages are best effort: pass with at least one, and say how many.
            let passed = hugetlb ? usage.hugetlbBytes == layout.sizes.usable && usage.kernelPageSizes == [layout.pageSize]
                : usage.anonHugeBytes >= layout.pageSize
            return (passed, "\(usage.hugeBytes) of \(layout.sizes.usable) B in huge pages "
                + "(smaps: KernelPageSize \(usage.kernelPageSizes.map(formatByteCount)), AnonHugePages \(usage.anonHugeBytes) B)")
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
            (try Probe.isUnmapped(whole), "guard and usable range unmapped after release (mincore: ENOMEM)")
        }
    }

    /// Packed stacks: share one huge page, carry canaries that `check` and release verify.
    private static func checkPacked(_ allocator: HugePageStackAllocator, into report: inout VerifyReport) {
        let backing: HugePageRequest.Backing
        if (MachineCapabilities.hugePagePool(pageSize: MachineCapabilities.defaultHugePageSize())?.available ?? 0) > 0 {
            backing = .anonymous
        } else if ["madvise", "always"].contains(MachineCapabilities.transparentHugePageMode() ?? "never") {
            backing = .transparent
        } else {
            report.add("packed-canary", "huge/packed", true, "skipped: needs a free huge page (/proc/sys/vm/nr_hugepages) or THP")
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
        let size = MachineCapabilities.defaultHugePageSize()
        guard let pool = MachineCapabilities.hugePagePool(pageSize: size) else {
            report.add("exhaustion", "huge", true, "skipped: no default huge page pool")
            return
        }
        let needed = pool.total + (pool.overcommit ?? 0) + 1
        guard needed * size <= StackSizes.maximumUsableSize else {
            report.add("exhaustion", "huge", true, "skipped: the pool (\(pool.total) pages) is larger than the largest stack")
            return
        }
        let request = HugePageRequest(.anonymous, pageSize: size)
        report.check("exhaustion-strict", "huge") {
            guard let error = allocationError(allocator, StackRequest(usableSize: needed * size, pages: .huge(request))) else {
                return (false, "a stack of \(needed) pages from a pool of \(pool.total) was granted")
            }
            guard case .hugePagesExhausted(_, let reportedNeed, let free, _, let file) = error else { throw error }
            return (reportedNeed == needed && file == pool.controlFile, "hugePagesExhausted: \(needed) needed, \(free) free, raise \(file)")
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
