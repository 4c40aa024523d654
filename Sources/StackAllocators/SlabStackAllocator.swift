import CStackSupport
import Glibc
@_spi(Benchmarks) import GuardPages
import Logging
import Synchronization
import SystemPackage
@_spi(Benchmarks) import OverflowDetection

/// Stacks of one size carved from large reserved regions, each with a guard below it: a million guarded
/// stacks in a few hundred mappings.
///
/// A region is one `mmap(stacksPerRegion × (guard + usable), PROT_READ|PROT_WRITE,
/// MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_STACK)`: address space only, no memory until touched.
/// A slot's guard is installed the first time the slot is carved (a region-wide madvise cannot place a
/// guard per stack) and stays for the slot's life, so a reused slot costs no guard syscall.
///
/// Under strict overcommit (`vm.overcommit_memory=2`, read when each region is mapped), which ignores
/// MAP_NORESERVE and charges every writable private mapping against CommitLimit, a region is mapped
/// PROT_NONE instead and each slot made writable (mprotect) when it is carved, so only carved slots are
/// charged: a region holding one stack would otherwise charge all of its 512 MiB.
///
/// - **Lightweight guards** (`MADV_GUARD_INSTALL`, Linux >= 6.13) add no mapping: the map count grows by
///   one line per region at most (two under strict overcommit). Slots are carved 32 at a time, their
///   guards installed in one process_madvise(2), and handed out lowest first before the next are carved.
/// - **mprotect guards** split the region: two mappings per carved slot. Before carving, the slab checks
///   its `MapCountBudget` and throws `.resourceExhausted` (naming `vm.max_map_count` and how many
///   stacks would still fit) instead of letting mprotect fail with ENOMEM.
///
/// **Release** returns the usable pages to the OS with `MADV_DONTNEED` and puts the slot on its region's
/// free list (last in, first out). Released stacks are discarded `Configuration.discardBatch` at a time,
/// in one process_madvise(2) (a madvise each where the kernel refuses that), so a burst of releases, a
/// scheduler's shutdown say, costs one TLB shootdown per batch rather than per stack; the next allocation
/// takes the most recently released stack first, discarding it then if its batch is not done. The next
/// owner of a slot reads zeros: no data passes between owners through a slab, and an idle slot costs no
/// memory once discarded. Where madvise is refused (a seccomp profile), a released stack is zeroed in
/// place instead (logged once): it still reaches its next owner zeroed, but keeps its memory. Keep warm
/// stacks in a `PooledStackAllocator` over the slab, which is where reuse without page faults belongs.
///
/// Requests up to the slab's size are served with the slab's size; larger ones, or huge pages, get a typed
/// error. `StackDescriptor.tag` holds the stack's serial: a release is honoured only for the stack a slot
/// holds now, so a slot never goes on the free list twice. The slab is thread-safe: one mutex guards its
/// bookkeeping.
public final class SlabStackAllocator: StackAllocator, StackStatsReporting, StackResidencyReporting {
    /// The configuration the slab was made with.
    package let configuration: Configuration
    /// Sizes of every stack (validated and rounded).
    package let sizes: StackSizes

    /// The sizes every stack of this allocator has.
    public var fixedSizes: StackSizes? { sizes }
    /// What guards every stack: the installer's mechanism, or `.none` for a zero guard.
    package let guardMechanism: GuardMechanism
    /// Bytes of the regions the slab maps now: `stacksPerRegion` stacks, or fewer where the kernel refused
    /// that much address space (`mapRegion`).
    package var regionSize: Int { state.withLock { $0.regionCapacity } * sizes.total }
    /// The addresses of the regions mapped now, so that a check can count the kernel's mappings in them.
    package var regionRanges: [Range<UInt>] {
        state.withLock { state in
            state.regions.regions.compactMap { region in
                region.map(addresses(of:))
            }
        }
    }
    private let installer: GuardInstaller
    private let logger: Logger
    private let recorder = StackStatsRecorder(reservesPerStack: false)
    private let state: Lock<State>
    /// Set once a discard that failed has been logged as zeroing instead (`zeroInstead`).
    private let zeroingLogged = Atomic<Bool>(false)

    private struct State: ~Copyable {
        var regions: SlabRegions
        /// Slots of the next region mapped: `stacksPerRegion`, halved each time the kernel refuses the
        /// address space, and kept so from then on.
        var regionCapacity: Int
        /// Present with mprotect guards: keeps the slab below vm.max_map_count.
        var budget: MapCountBudget?
    }

    /// A slab of `configuration`'s shape. Maps nothing until the first allocation. Throws for invalid
    /// sizes, and `.unsupported` when `.lightweight` guards are forced on a kernel without them.
    public init(_ configuration: Configuration = Configuration(), logger: Logger = Logger(label: "fiberstacks.slab"))
        throws(StackError)
    {
        let (sizes, regionSize) = try configuration.validated()
        installer = try GuardInstaller(mode: configuration.guardMode)
        self.configuration = configuration
        self.sizes = sizes
        self.logger = logger
        guardMechanism = sizes.guardSize == 0 ? .none : installer.mechanism
        let needsBudget = guardMechanism == .protNone
        let budget = needsBudget
            ? try MapCountBudget(reserve: configuration.mapCountReserve, limitOverride: configuration.mapCountLimitOverride)
            : nil
        state = Lock(State(
            regions: SlabRegions(stride: sizes.total, discardBatch: configuration.discardBatch),
            regionCapacity: configuration.stacksPerRegion, budget: budget))
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

    /// Counters, with `cached` = released slots kept with their guards (those waiting for their discard
    /// included).
    public var stats: StackAllocatorStats {
        var stats = recorder.snapshot
        stats.cached = state.withLock { $0.regions.cached }
        return stats
    }

    public func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        try accept(request)
        let claim = try state.withLock { (state) throws(StackError) -> Claim in try claimSlot(&state) }
        switch claim.slot.condition {
        case .ready, .fresh: break
        case .unguarded: try carve(claim)
        case .undiscarded:
            // Reused before its batch was discarded: discarded alone now, so its new owner reads zeros.
            if let errno = clean(claim.layout.usableBottom) {
                state.withLock { _ = $0.regions.reclaim(base: claim.layout.base, serial: claim.serial) }
                keepOut(claim.layout.usableBottom, errno)
                return try allocate(request)
            }
        }
        do {
            try Prefault.apply(request.prefault, to: claim.layout, logger: logger)
        } catch {
            recorder.recordPrefaultFailure()
            abandon(claim)
            throw error
        }
        let descriptor = StackDescriptor(
            layout: claim.layout, guardMechanism: guardMechanism, node: configuration.placement?.homeNode, tag: claim.serial)
        let stack: Stack
        do {
            stack = try Stack.registering(descriptor, allocator: self)
        } catch {
            abandon(claim)
            throw error
        }
        recorder.recordAllocation(descriptor)
        return stack
    }

    /// Refuses (logs, counts in `refusedReleases`, frees nothing) a descriptor that is not the stack a
    /// slot holds now, serial (`tag`) included: see `StackAllocator` on what that protects against.
    public func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        // One lock for both steps: the slot is reclaimed and held for its discard together.
        guard descriptor.layout.sizes == sizes, descriptor.guardMechanism == guardMechanism,
            descriptor.node == configuration.placement?.homeNode,
            let due = state.withLock({ state -> [SlabSlot]?? in
                state.regions.reclaim(base: descriptor.layout.base, serial: descriptor.tag).map { state.regions.holdForDiscard($0) }
            })
        else {
            recorder.recordRefusedRelease(descriptor, allocator: "slab", logger: logger)
            return
        }
        recorder.recordRelease(descriptor)
        if let due { discardAndFree(due) }
    }

    /// Discards every released stack still waiting for its batch, then unmaps every region with no live
    /// stack; returns how many regions. Their released slots count as trims.
    @discardableResult
    public func trim() -> Int {
        discardAndFree(state.withLock { $0.regions.takeUndiscarded() })
        return state.withLock { state in
            let empty = state.regions.emptyRegionIndices
            for index in empty {
                let region = state.regions.remove(index)
                recorder.recordTrim(region.free.count)
                unmap(region)
            }
            return empty.count
        }
    }

    /// Resident bytes over every carved slot (guards included, which are never resident; released stacks
    /// waiting for their discard included): one mincore walk per region.
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

    /// A slot handed out by `claimSlot`.
    private struct Claim {
        let slot: SlabSlot
        let layout: StackLayout
        /// The serial of its stack (the descriptor's tag).
        let serial: UInt
        /// The region's base when this claim mapped the region.
        let mappedRegion: UInt?
        /// Slots carved with this one, itself included (`guardWindow`), or 1.
        let window: Int
        /// Whether its region was mapped PROT_NONE (strict overcommit): carving makes the slots writable.
        let opens: Bool
    }

    /// Picks a slot (reused, carved, or from a new region) and hands it out, under the lock. A new slot
    /// is carved by `carve`, after the lock: the syscall would otherwise hold every
    /// other thread's allocate and release. A failure leaves nothing behind:
    /// no region it mapped.
    private func claimSlot(_ state: inout State) throws(StackError) -> Claim {
        var mapped: Int?
        if state.regions.nextSlot() == nil {
            mapped = try mapRegion(&state)
        }
        let slot = state.regions.nextSlot()!
        do throws(StackError) {
            let layout = try StackLayout(base: state.regions.base(of: slot), sizes: sizes)
            if slot.condition == .unguarded, guardMechanism != .none {
                try state.budget?.charge(MapCountBudget.linesPerGuard)
            }
            let carves = slot.condition == .unguarded && slot.slot == state.regions.regions[slot.region]!.carved
            let room = state.regions.regions[slot.region]!.capacity - slot.slot
            let window = carves && guardMechanism == .lightweight ? min(Self.guardWindow, room) : 1
            let serial = state.regions.take(slot, window: window)
            let mappedRegion = mapped.map { state.regions.regions[$0]!.base }
            return Claim(
                slot: slot, layout: layout, serial: serial, mappedRegion: mappedRegion, window: window,
                opens: state.regions.regions[slot.region]!.inaccessible)
        } catch {
            if let mapped { unmap(state.regions.remove(mapped)) }
            throw error
        }
    }

    /// Slots carved at once with lightweight guards: their guards go in one process_madvise, which takes
    /// the memory map lock once instead of once per slot. The slots carved with a claimed one are handed out
    /// before any other new slot; a window costs at most its slots' page-table entries in advance.
    @_spi(Benchmarks) public static let guardWindow = 32

    /// Carves a claimed new slot and the slots carved with it: in a region mapped PROT_NONE makes them
    /// writable (with lightweight guards the whole slots, since a guard marker needs a writable mapping;
    /// otherwise the usable range, the rest staying PROT_NONE as its mprotect guard), and installs their
    /// guards; both stay while the region is mapped. The others become available at once (those whose
    /// guard failed as unguarded slots, carved again later, logged); when the claimed slot itself failed,
    /// it goes back unguarded, its region unmapped when this claim mapped it and nothing else lives
    /// there, and the error is thrown.
    private func carve(_ claim: Claim) throws(StackError) {
        if claim.opens { try open(claim) }
        // An mprotect guard is what the reservation left PROT_NONE.
        guard guardMechanism == .lightweight || (guardMechanism == .protNone && !claim.opens) else { return }
        if claim.window == 1 {
            do throws(StackError) {
                try installer.install(on: claim.layout.guardRange)
            } catch {
                abandon(claim, guarded: false)
                throw error
            }
            return
        }
        let first = claim.layout.base
        let starts = (0..<claim.window).map { first + UInt($0 * sizes.total) }
        let guards = starts.map { fs_address_range(start: $0, length: sizes.guardSize) }
        let failures = RangeAdvice.apply(Int32(FS_MADV_GUARD_INSTALL), to: guards, logger: logger)
        // Their registrations follow, one per allocation: each would otherwise miss the cache.
        GuardRegistry.prefetch(usableBottoms: starts.map { $0 + UInt(sizes.guardSize) })
        state.withLock { state in
            state.regions.settle(
                window: (claim.slot.slot + 1)..<(claim.slot.slot + claim.window), in: claim.slot.region,
                unguarded: failures.map { claim.slot.slot + $0.position })
        }
        let ahead = failures.filter { $0.position > 0 }
        if let failure = ahead.first {
            logger.warning(
                "installing the guards of slab slots carved ahead failed; each is installed again when its slot is handed out",
                metadata: ["slots": "\(ahead.count)", "errno": "\(failure.errno)"])
        }
        if let own = failures.first, own.position == 0 {
            abandon(claim, guarded: false)
            throw .guardInstallFailed(own.errno, mechanism: guardMechanism)
        }
    }

    /// Makes a claim's slots writable in a region mapped PROT_NONE; on failure gives them back unguarded
    /// (carved again later) and throws.
    private func open(_ claim: Claim) throws(StackError) {
        let range = guardMechanism == .lightweight
            ? claim.layout.base..<(claim.layout.base + UInt(claim.window * sizes.total)) : claim.layout.usableRange
        let size = Int(range.upperBound - range.lowerBound)
        guard case .failure(let errno) = Syscall.protect(range.lowerBound, size: size, PROT_READ | PROT_WRITE) else { return }
        if claim.window > 1 {
            let others = (claim.slot.slot + 1)..<(claim.slot.slot + claim.window)
            state.withLock { $0.regions.settle(window: others, in: claim.slot.region, unguarded: Array(others)) }
        }
        abandon(claim, guarded: false)
        // ENOMEM: a split past vm.max_map_count, or the commit limit of strict overcommit.
        throw errno == .noMemory ? MapCount.exhaustedError() ?? .mappingFailed(errno, size: size) : .mappingFailed(errno, size: size)
    }

    /// Maps a new region (checking the map budget first, with mprotect guards); returns its index. Where
    /// the kernel refuses the address space (ENOMEM: `ulimit -v` or `ulimit -d`, or an address space that
    /// is full), the region shrinks (`capacityAfterRefusal`) until one maps, down to a single stack; the
    /// slab keeps mapping regions of that size (logged): fewer stacks per mmap, the same stacks.
    private func mapRegion(_ state: inout State) throws(StackError) -> Int {
        if state.budget != nil {
            try state.budget!.refresh()
            try state.budget!.charge(1)
        }
        let inaccessible = configuration.strictOvercommitOverride ?? Overcommit.isStrict
        let asked = state.regionCapacity
        while true {
            let size = state.regionCapacity * sizes.total
            let base: UInt
            switch Syscall.map(size: size, protection: inaccessible ? PROT_NONE : PROT_READ | PROT_WRITE, flags: StackLayout.mappingFlags) {
            case .success(let address): base = address
            case .failure(let errno):
                if errno == .noMemory, let exhausted = MapCount.exhaustedError() { throw exhausted }
                guard errno == .noMemory, state.regionCapacity > 1 else { throw .mappingFailed(errno, size: size) }
                state.regionCapacity = capacityAfterRefusal(state.regionCapacity)
                continue
            }
            if let placement = configuration.placement {
                do throws(StackError) {
                    try NUMABinding.apply(placement, to: base..<(base + UInt(size)), untouched: true)
                } catch {
                    Syscall.unmap(base, size: size, logger: logger, what: "a slab region")
                    throw error
                }
            }
            if state.regionCapacity < asked {
                logger.notice(
                    "a slab region of \(asked) stacks (\(asked * sizes.total) bytes) could not be mapped (ENOMEM: the limit of ulimit -v or ulimit -d, or a full address space); the slab maps regions of \(state.regionCapacity) stack\(state.regionCapacity == 1 ? "" : "s") from now on",
                    metadata: ["region bytes": "\(size)"])
            }
            recorder.recordReserved(size)
            return state.regions.add(base: base, capacity: state.regionCapacity, inaccessible: inaccessible)
        }
    }

    /// The region capacity to try after mmap refused a region of `capacity` stacks (ENOMEM): the largest
    /// halving that takes at most half of the room `ulimit -v` and `ulimit -d` leave, so that malloc and
    /// thread stacks keep the other half; half of `capacity` where no limit is set (a full address space).
    /// The room is read, not found by mapping trial regions: a trial that fits takes all of it for a moment,
    /// and another thread's malloc fails then.
    private func capacityAfterRefusal(_ capacity: Int) -> Int {
        var fitted = capacity / 2
        let room: Int?
        do throws(StackError) {
            room = try MappingLimit.current().map(\.room).min()
        } catch {
            logger.notice("the room under ulimit -v and ulimit -d is unknown; halving the slab's regions", metadata: ["error": "\(error)"])
            room = nil
        }
        guard let room else { return fitted }
        while fitted > 1 && fitted * sizes.total > room / 2 { fitted /= 2 }
        return fitted
    }

    /// Gives back a claim whose stack was never handed out (`guarded` false: its guard and registration
    /// failed); unmaps the region too when the claim mapped it and it holds no other stack.
    private func abandon(_ claim: Claim, guarded: Bool = true) {
        guard let slot = state.withLock({ $0.regions.reclaim(base: claim.layout.base, serial: claim.serial) }) else { return }
        if guarded {
            awaitDiscard(slot)
        } else {
            state.withLock { state in
                if let emptied = state.regions.put(slot, retainingEmpty: configuration.retainedEmptyRegions, guarded: false) {
                    unmap(state.regions.remove(emptied))
                }
            }
        }
        guard let mappedRegion = claim.mappedRegion else { return }
        state.withLock { state in
            if let region = state.regions.regions[slot.region], region.base == mappedRegion, region.occupied == 0 {
                unmap(state.regions.remove(slot.region))
            }
        }
    }

    /// Holds a reclaimed slot until its pages are discarded, discarding its batch when that is due.
    private func awaitDiscard(_ slot: SlabSlot) {
        if let due = state.withLock({ $0.regions.holdForDiscard(slot) }) { discardAndFree(due) }
    }

    /// Discards the pages of released slots that wait for it and puts them on their regions' free lists
    /// (unmapping a region that became one empty region too many). A slot whose discard failed is kept
    /// out of reuse (logged), since its old contents might survive.
    ///
    /// Neighbouring slots of one region are discarded as one range, over the guards between them: a
    /// discard keeps lightweight guard markers, and finds nothing mapped in an mprotect guard. One range
    /// instead of one per stack takes a fifth (touched stacks) to a third (untouched) less kernel time.
    private func discardAndFree(_ slots: [SlabSlot]) {
        guard !slots.isEmpty else { return }
        let ordered = slots.sorted { ($0.region, $0.slot) < ($1.region, $1.slot) }
        var runs: [Range<Int>] = []
        for position in ordered.indices {
            if let run = runs.last, ordered[position].region == ordered[run.upperBound - 1].region,
                ordered[position].slot == ordered[run.upperBound - 1].slot + 1
            {
                runs[runs.count - 1] = run.lowerBound..<(position + 1)
            } else {
                runs.append(position..<(position + 1))
            }
        }
        // Outside the lock: the slots are on no list, so nobody else touches them, and their regions stay
        // mapped while they are occupied.
        let usableBottoms = state.withLock { state in
            ordered.map { state.regions.base(of: $0) + UInt(sizes.guardSize) }
        }
        // A run of n stacks spans n - 1 whole slots and the last stack's usable pages.
        let ranges = runs.map { run in
            fs_address_range(
                start: usableBottoms[run.lowerBound], length: (run.count - 1) * sizes.total + sizes.usableSize)
        }
        var keptOut = Set<SlabSlot>()
        for failure in RangeAdvice.apply(Int32(FS_MADV_DONTNEED), to: ranges, logger: logger) {
            // A run that failed is discarded again stack by stack: only a stack that fails alone stays out.
            let run = runs[failure.position]
            for position in run {
                let bottom = usableBottoms[position]
                guard let errno = run.count > 1 ? clean(bottom) : zeroInstead(bottom, discardFailed: failure.errno) else { continue }
                keepOut(bottom, errno)
                keptOut.insert(ordered[position])
            }
        }
        state.withLock { state in
            // Hashing every slot against an empty set would cost each release for nothing.
            for slot in slots where keptOut.isEmpty || !keptOut.contains(slot) {
                if let emptied = state.regions.put(slot, retainingEmpty: configuration.retainedEmptyRegions) {
                    unmap(state.regions.remove(emptied))
                }
            }
        }
    }

    /// Discards the pages of the released stack at `usableBottom`, or zeroes them where madvise is refused
    /// (`zeroInstead`). Returns the errno when neither worked.
    private func clean(_ usableBottom: UInt) -> Errno? {
        guard case .failure(let errno) = Syscall.advise(usableBottom, size: sizes.usableSize, Int32(FS_MADV_DONTNEED))
        else { return nil }
        return zeroInstead(usableBottom, discardFailed: errno)
    }

    /// Zeroes the resident pages of the released stack at `usableBottom`, whose discard failed with
    /// `errno` (a seccomp profile refuses madvise, say): its next owner still reads zeros, but its memory
    /// stays with the process until the region is unmapped. Logged once per slab. Returns `errno` when the
    /// residency could not be read either.
    private func zeroInstead(_ usableBottom: UInt, discardFailed errno: Errno) -> Errno? {
        do {
            try StackHygiene.scrub(usableBottom..<(usableBottom + UInt(sizes.usableSize)))
        } catch {
            return errno
        }
        if !zeroingLogged.exchange(true, ordering: .relaxed) {
            logger.warning(
                "MADV_DONTNEED on a released slab stack failed; released stacks are zeroed in place instead and keep their memory until their region is unmapped",
                metadata: ["errno": "\(errno)", "why": "\(StackHygiene.discards.missing ?? "this stack alone")"])
        }
        return nil
    }

    /// Logs and counts a released stack that could be neither discarded nor zeroed: its slot stays
    /// occupied, never reused.
    private func keepOut(_ usableBottom: UInt, _ errno: Errno) {
        recorder.recordReleaseFailure()
        logger.error(
            "a released slab stack could be neither discarded (MADV_DONTNEED) nor zeroed (mincore failed); the slot is not reused",
            metadata: ["usable bottom": "0x\(String(usableBottom, radix: 16))", "errno": "\(errno)"])
    }

    /// The addresses `region` spans: its slots, guards included.
    private func addresses(of region: SlabRegion) -> Range<UInt> {
        region.base..<(region.base + UInt(region.capacity * sizes.total))
    }

    /// Unmaps a region, logging a failure (which would mean corrupted bookkeeping).
    private func unmap(_ region: SlabRegion) {
        let size = addresses(of: region).count
        recorder.recordReserved(-size)
        if case .failure(let errno) = Syscall.unmap(region.base, size: size) {
            recorder.recordReleaseFailure()
            logger.error(
                "munmap of a slab region failed; its address space is leaked",
                metadata: ["address": "0x\(String(region.base, radix: 16))", "errno": "\(errno)"])
        }
    }
}
