import Logging
@_spi(Benchmarks) import OverflowDetection
import Synchronization

/// Huge-page stacks that keep a hardware guard: hugetlbfs files (through libhugetlbfs), anonymous
/// `MAP_HUGETLB`, or transparent huge pages, chosen per request with `StackRequest(pages: .huge(...))`.
///
/// **Layout** (one stack per region, the default): a small-page PROT_NONE guard directly below a usable
/// range aligned to the huge page size (see `HugePageRegion` and docs/huge-pages.md). The usable size is
/// rounded *up* to a multiple of the huge page size; `layout.pageSize` is the huge page size and
/// `guardMechanism` is `.protNone` (`.none` for a zero guard). Two VMAs per stack.
///
/// **hugetlb stacks are always populated** at allocation with `MADV_POPULATE_WRITE`, whatever the
/// request's prefault policy: that is how an empty pool becomes `StackError.hugePagesExhausted` here
/// rather than a SIGBUS at the fiber's first touch. Transparent huge page stacks follow the policy.
///
/// **Packed stacks** (`HugePageRequest.Packing.packed`) share a huge page and carry a canary instead of
/// a guard: `check(_:)` and release verify it. **Exhaustion** follows the request's policy: `.strict`
/// throws, `.fallback` returns a guarded small-page stack, counted in `stats.fallbacks` and logged (a
/// warning the first time, debug after that).
///
/// `.small` requests get guarded small-page stacks laid out the same way (not counted as fallbacks).
/// `StackRequest.placement` binds the usable range before it is populated; an empty pool on that node
/// is `.resourceExhausted` naming the node's control file. Hardware-guarded stacks are in
/// the guard registry while they live, so an overflow names them.
///
/// **Release** is honoured for a stack the allocator's own record holds as live (`StackDescriptor.tag`
/// carries its serial); any other release is refused, logged and counted in `stats.refusedReleases`.
public final class HugePageStackAllocator: StackAllocator, StackStatsReporting {
    private let logger: Logger
    private let recorder = StackStatsRecorder()
    private let packed = PackedHugePageStacks()
    /// Live stacks, with the packed region of each packed one (nil for a stack with a region of its own).
    private let live = LiveStacks<UInt?>()
    private let fallbackWarned = Atomic<Bool>(false)
    /// Successful resolutions, so sysfs and the mount table are read once per kind of request.
    private let resolved = Lock<[ResolutionKey: HugePageBacking]>([:])

    private struct ResolutionKey: Hashable {
        let backing: HugePageRequest.Backing
        let pageSize: Int?
    }

    /// An allocator logging on `logger`. Nothing is mapped or checked until the first request.
    public init(logger: Logger = Logger(label: "fiberstacks.huge")) {
        self.logger = logger
    }

    public var stats: StackAllocatorStats { recorder.snapshot }

    public func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        guard case .huge(let huge) = request.pages else { return try allocateRegion(request, backing: .small) }
        do throws(StackError) {
            let backing = try resolve(huge)
            switch huge.packing {
            case .oneStackPerRegion: return try allocateRegion(request, backing: backing)
            case .packed: return try allocatePacked(request, backing: backing)
            }
        } catch {
            guard huge.exhaustion == .fallback, Self.isShortage(error) else { throw error }
            let stack = try allocateRegion(request, backing: .small)
            recorder.recordFallback()
            let metadata: Logger.Metadata = ["reason": "\(error)", "stack": "\(stack.descriptor)"]
            if !fallbackWarned.exchange(true, ordering: .relaxed) {
                logger.warning("huge pages unavailable; serving small-page stacks (counted in stats.fallbacks)", metadata: metadata)
            } else {
                logger.debug("huge pages unavailable; small-page stack", metadata: metadata)
            }
            return stack
        }
    }

    /// Refuses (logs, counts in `refusedReleases`, frees nothing) a descriptor that is not a live stack of
    /// this allocator, tag included: see `StackAllocator` on what that protects against.
    public func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        guard let packedRegion = live.remove(descriptor) else {
            recorder.recordRefusedRelease(descriptor, allocator: "huge-page", logger: logger)
            return
        }
        guard let packedRegion else {
            recorder.recordRelease(descriptor, failed: !HugePageRegion.unmap(descriptor.layout, logger: logger))
            return
        }
        do {
            try Canary.check(descriptor.layout)
        } catch {
            recorder.recordCanaryCorruption()
            logger.error("\(error)")
        }
        let slot = PackedHugePageStacks.Slot(region: packedRegion, address: descriptor.layout.usableBottom)
        GuardRegistry.setLabel("", forStackAt: slot.address)  // the region's lowest slot carries its label
        let emptied = packed.release(slot)
        recorder.recordRelease(descriptor, failed: emptied.map { !unmapPackedRegion($0) } ?? false)
    }

    /// Ends the guard registration of a packed region that no stack uses any more, then unmaps it.
    @discardableResult
    private func unmapPackedRegion(_ region: PackedHugePageStacks.Mapping) -> Bool {
        if region.guardRegistration != 0 { GuardRegistry.end(region.guardRegistration, at: region.layout.usableBottom) }
        return HugePageRegion.unmap(region.layout, logger: logger)
    }

    /// Bytes of the stack's usable range that the kernel backs with huge pages now, from
    /// /proc/self/smaps (hugetlb pages faulted in, or `AnonHugePages` for transparent huge pages). For a
    /// packed stack this is its whole region's.
    public static func hugePageBytes(of stack: borrowing Stack) throws(StackError) -> Int {
        try Smaps.usage(of: stack.descriptor.layout.usableRange).hugeBytes
    }

    /// A guarded region of `backing`'s pages for one stack.
    private func allocateRegion(_ request: StackRequest, backing: HugePageBacking) throws(StackError) -> Stack {
        let sizes = try StackSizes(usableSize: request.usableSize, guardSize: request.guardSize, pageSize: backing.pageSize)
        let layout: StackLayout
        do throws(StackError) {
            layout = try HugePageRegion.map(
                sizes, backing: backing, prefault: request.prefault, placement: request.placement, logger: logger)
        } catch {
            if case .prefaultFailed = error.reason { recorder.recordPrefaultFailure() }
            throw error
        }
        let descriptor = live.add(
            StackDescriptor(
                layout: layout, guardMechanism: sizes.guardSize == 0 ? .none : .protNone, node: request.placement?.homeNode),
            nil)
        do throws(StackError) {
            let stack = try Stack.registering(descriptor, allocator: self)
            recorder.recordAllocation(descriptor)
            return stack
        } catch {
            _ = live.remove(descriptor)
            HugePageRegion.unmap(layout, logger: logger)
            throw error
        }
    }

    /// A slot of a shared huge page, with a canary at its bottom. The slot is the usable size rounded
    /// up to the system page size; at least two must fit in a huge page. A new region is one huge page,
    /// populated, with the request's guard below it.
    private func allocatePacked(_ request: StackRequest, backing: HugePageBacking) throws(StackError) -> Stack {
        let slotSizes = try StackSizes(usableSize: request.usableSize, guardSize: 0)
        guard slotSizes.usableSize <= backing.pageSize / 2 else {
            throw .invalidSize(
                requested: request.usableSize,
                reason: "packed stacks must fit at least two to a \(formatByteCount(backing.pageSize)) page "
                    + "(at most \(formatByteCount(backing.pageSize / 2))); use Packing.oneStackPerRegion")
        }
        let regionSizes = try StackSizes(usableSize: backing.pageSize, guardSize: request.guardSize, pageSize: backing.pageSize)
        let key = PackedHugePageStacks.Key(backing: backing, slotSize: slotSizes.usableSize, guardSize: regionSizes.guardSize)
        let slot: PackedHugePageStacks.Slot
        if let free = packed.takeSlot(key) {
            slot = free
        } else {
            let region = try HugePageRegion.map(
                regionSizes, backing: backing, prefault: PrefaultPolicy(.populate), placement: request.placement, logger: logger)
            // The region's guard lies below its lowest slot: registered, an overflow of that slot is named.
            var registration: UInt64 = 0
            if regionSizes.guardSize > 0 {
                do throws(StackError) {
                    registration = try GuardRegistry.register(region)
                } catch {
                    HugePageRegion.unmap(region, logger: logger)
                    throw error
                }
            }
            slot = packed.add(PackedHugePageStacks.Mapping(layout: region, guardRegistration: registration), key: key)
        }
        let layout: StackLayout
        do throws(StackError) {
            layout = try StackLayout(base: slot.address, sizes: slotSizes)
        } catch {
            if let emptied = packed.release(slot) { unmapPackedRegion(emptied) }
            throw error
        }
        Canary.write(layout)
        let descriptor = live.add(StackDescriptor(layout: layout, guardMechanism: .canary), slot.region)
        recorder.recordAllocation(descriptor)
        return Stack(descriptor: descriptor, allocator: self)
    }

    /// `request` resolved on this machine, from the cache when it resolved before.
    private func resolve(_ request: HugePageRequest) throws(StackError) -> HugePageBacking {
        let key = ResolutionKey(backing: request.backing, pageSize: request.pageSize)
        if let backing = resolved.withLock({ $0[key] }) { return backing }
        let backing = try HugePageBacking.resolve(request)
        resolved.withLock { $0[key] = backing }
        return backing
    }

    /// Errors the fallback policy absorbs: huge pages cannot be had. Bad input is never absorbed.
    private static func isShortage(_ error: StackError) -> Bool {
        switch error.reason {
        case .hugePagesExhausted, .hugeTLBFSMountFull, .hugeTLBCgroupLimitReached, .capabilityMissing: true
        default: false
        }
    }
}
