import CStackSupport
import Logging

/// Stacks of one size carved from large reserved regions, each with a guard below it: a million guarded
/// stacks in a few hundred mappings.
///
/// A region is one `mmap(stacksPerRegion × (guard + usable), PROT_READ|PROT_WRITE,
/// MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_STACK)`: address space only, no memory until touched.
/// A slot's guard is installed the first time the slot is carved (a region-wide madvise cannot place a
/// guard per stack) and stays for the slot's life, so a reused slot costs no guard syscall.
///
/// - **Lightweight guards** (`MADV_GUARD_INSTALL`, Linux >= 6.13) add no mapping: the map count grows by
///   one line per region at most.
/// - **mprotect guards** split the region: two mappings per carved slot. Before carving, the slab checks
///   its `MapCountBudget` and throws `.mapCountReserveReached` (naming `vm.max_map_count` and how many
///   stacks would still fit) instead of letting mprotect fail with ENOMEM.
///
/// **Release** returns the usable pages to the OS with `MADV_DONTNEED` and puts the slot on its region's
/// free list (last in, first out). The next owner of the slot reads zeros: no data passes between owners
/// through a slab, and an idle slot costs no memory. Keep warm stacks in a `PooledStackAllocator` over
/// the slab, which is where reuse without page faults belongs.
///
/// Requests up to the slab's size are served with the slab's size; larger ones, or huge pages, get a typed
/// error. `StackDescriptor.tag` holds the slot. The slab is thread-safe: one mutex guards its bookkeeping.
public final class SlabStackAllocator: StackAllocator, StackStatsReporting, StackResidencyReporting {
    /// The configuration the slab was made with.
    public let configuration: Configuration
    /// Sizes of every stack (validated and rounded).
    public let sizes: StackSizes
    /// What guards every stack: the installer's mechanism, or `.none` for a zero guard.
    public let guardMechanism: GuardMechanism
    /// Bytes of one region.
    public let regionSize: Int
    private let installer: GuardInstaller
    private let logger: Logger
    private let recorder = StackStatsRecorder(reservesPerStack: false)
    private let state: Lock<State>

    private struct State: ~Copyable {
        var regions: SlabRegions
        /// Present with mprotect guards: keeps the slab below vm.max_map_count.
        var budget: MapCountBudget?
    }

    /// A slab of `configuration`'s shape. Maps nothing until the first allocation. Throws for invalid
    /// sizes, and `.capabilityMissing` when `.lightweight` guards are forced on a kernel without them.
    public init(_ configuration: Configuration = Configuration(), logger: Logger = Logger(label: "fiberstacks.slab"))
        throws(StackError)
    {
        let (sizes, regionSize) = try configuration.validated()
        installer = try GuardInstaller(mode: configuration.guardMode)
        self.configuration = configuration
        self.sizes = sizes
        self.regionSize = regionSize
        self.logger = logger
        guardMechanism = sizes.guardSize == 0 ? .none : installer.mechanism
        let needsBudget = guardMechanism == .protNone
        let budget = needsBudget
            ? try MapCountBudget(reserve: configuration.mapCountReserve, limitOverride: configuration.mapCountLimitOverride)
            : nil
        state = Lock(State(regions: SlabRegions(capacity: configuration.stacksPerRegion), budget: budget))
        logger.debug(
            "slab stack allocator ready",
            metadata: ["guard": "\(guardMechanism)", "stack": "\(sizes.total)", "region": "\(regionSize)"])
    }

    deinit {
        // No stack is live (each holds the slab): every region goes, with any slot a failed release kept.
        state.withLock { state in
            for case let region? in state.regions.regions { unmap(region) }
        }
    }

    /// Counters, with `cached` = released slots kept with their guards.
    public var stats: StackAllocatorStats {
        var stats = recorder.snapshot
        stats.cached = state.withLock { $0.regions.cached }
        return stats
    }

    public func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        try accept(request)
        let (slot, layout) = try state.withLock { (state) throws(StackError) -> (SlabSlot, StackLayout) in
            try claimSlot(&state)
        }
        do {
            try Prefault.apply(request.prefault, to: layout, logger: logger)
        } catch {
            recorder.recordPrefaultFailure()
            giveBack(slot, layout: layout)
            throw error
        }
        let descriptor = StackDescriptor(
            layout: layout, guardMechanism: guardMechanism, node: configuration.placement?.homeNode, tag: slot.tag)
        recorder.recordAllocation(descriptor)
        return Stack(descriptor: descriptor, allocator: self)
    }

    public func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        let returned = giveBack(SlabSlot(tag: descriptor.tag), layout: descriptor.layout)
        recorder.recordRelease(descriptor, failed: !returned)
    }

    /// Unmaps every region with no live stack; returns how many. Their released slots count as trims.
    @discardableResult
    public func trim() -> Int {
        state.withLock { state in
            let empty = state.regions.emptyRegionIndices
            for index in empty {
                let region = state.regions.remove(index)
                recorder.recordTrim(region.free.count)
                unmap(region)
            }
            return empty.count
        }
    }

    /// Resident bytes over every carved slot (guards included, which are never resident): one mincore
    /// walk per region.
    public func residentBytes() throws(StackError) -> Int {
        let stride = UInt(sizes.total)
        return try state.withLock { (state) throws(StackError) -> Int in
            var total = 0
            for case let region? in state.regions.regions where region.carved > 0 {
                total += try StackAllocators.residentBytes(in: region.base..<(region.base + UInt(region.carved) * stride))
            }
            return total
        }
    }

    // MARK: - Paths

    /// Checks that `request` fits this slab's stacks.
    private func accept(_ request: StackRequest) throws(StackError) {
        if request.usableSize == configuration.usableSize, request.guardSize == configuration.guardSize,
            request.pages == .small, request.placement == nil || request.placement == configuration.placement
        {
            return
        }
        try StackShape(sizes: sizes, pages: .small, placement: configuration.placement, owner: "slab").accept(request)
    }

    /// Picks a slot (reused, carved, or from a new region), installs its guard when new, and hands it out.
    private func claimSlot(_ state: inout State) throws(StackError) -> (SlabSlot, StackLayout) {
        if state.regions.nextSlot() == nil {
            try mapRegion(&state)
        }
        let slot = state.regions.nextSlot()!
        let base = state.regions.regions[slot.region]!.base + UInt(slot.slot * sizes.total)
        let layout = try StackLayout(base: base, sizes: sizes)
        if slot.isNew, guardMechanism != .none {
            try state.budget?.charge(MapCountBudget.linesPerGuard)
            try installer.install(on: layout.guardRange)
            // A slot stays registered while its region is mapped, like its guard; release clears its label.
            try GuardRegistry.register(layout)
        }
        state.regions.take(slot)
        return (slot, layout)
    }

    /// Maps a new region (checking the map budget first, with mprotect guards).
    private func mapRegion(_ state: inout State) throws(StackError) {
        if state.budget != nil {
            try state.budget!.refresh()
            try state.budget!.charge(1)
        }
        let flags = FS_MAP_PRIVATE | FS_MAP_ANONYMOUS | FS_MAP_NORESERVE | FS_MAP_STACK
        switch Syscall.map(size: regionSize, flags: flags) {
        case .success(let base):
            if let placement = configuration.placement {
                do throws(StackError) {
                    try NUMABinding.apply(placement, to: base..<(base + UInt(regionSize)), untouched: true)
                } catch {
                    Syscall.unmap(base, size: regionSize, logger: logger, what: "a slab region")
                    throw error
                }
            }
            _ = state.regions.add(base: base)
            recorder.recordReserved(regionSize)
        case .failure(let errno):
            throw errno == .noMemory
                ? MapCount.exhaustedError() ?? .mappingFailed(errno, size: regionSize)
                : .mappingFailed(errno, size: regionSize)
        }
    }

    /// Checks that the descriptor names a live slot, discards the slot's pages, and puts it back on its
    /// region's free list (unmapping the region when it became one empty region too many). Returns false
    /// (logged) when the descriptor does not name a live slot, or the discard failed: such a slot is not
    /// reused, since its old contents might survive.
    @discardableResult
    private func giveBack(_ slot: SlabSlot, layout: StackLayout) -> Bool {
        let held = state.withLock { state in
            state.regions.base(of: slot).map { $0 + UInt(slot.slot * sizes.total) == layout.base } ?? false
        }
        guard held else {
            logger.error("release of a stack this slab does not hold", metadata: ["stack": "\(layout)"])
            return false
        }
        // Outside the lock: the slot is still handed out, so nobody else touches it.
        if guardMechanism != .none { GuardRegistry.setLabel("", forStackAt: layout.usableBottom) }
        let discarded = Syscall.advise(layout.usableBottom, size: layout.sizes.usable, Int32(FS_MADV_DONTNEED))
        if case .failure(let errno) = discarded {
            logger.error(
                "MADV_DONTNEED on a released slab stack failed; the slot is not reused",
                metadata: ["stack": "\(layout)", "errno": "\(errno)"])
            return false
        }
        state.withLock { state in
            if let emptied = state.regions.put(slot, retainingEmpty: configuration.retainedEmptyRegions) {
                unmap(state.regions.remove(emptied))
            }
        }
        return true
    }

    /// Unregisters a region's carved slots and unmaps it, logging a failure (which would mean corrupted
    /// bookkeeping).
    private func unmap(_ region: SlabRegion) {
        if guardMechanism != .none {
            for slot in 0..<region.carved {
                let base = region.base + UInt(slot * sizes.total)
                if let layout = try? StackLayout(base: base, sizes: sizes), !GuardRegistry.unregister(layout) {
                    logger.error("a slab slot was not in the guard registry", metadata: ["stack": "\(layout)"])
                }
            }
        }
        recorder.recordReserved(-regionSize)
        if case .failure(let errno) = Syscall.unmap(region.base, size: regionSize) {
            recorder.recordReleaseFailure()
            logger.error(
                "munmap of a slab region failed; its address space is leaked",
                metadata: ["address": "0x\(String(region.base, radix: 16))", "errno": "\(errno)"])
        }
    }
}
