@_spi(Benchmarks) import OverflowDetection
@_spi(Benchmarks) import GuardPages
import Logging

/// One way to turn mapped memory into a finished stack, for every allocator, built-in or your own.
extension Stack {
    /// Makes a stack of memory your allocator has mapped (read-write, private, anonymous for the guards
    /// to work), doing what the `StackAllocator` contract asks, in the order that works:
    ///
    /// 1. binds the whole range to `request.placement` (mbind, before any page is touched);
    /// 2. installs the guard over `layout.guardRange` with `mechanism` (`.lightweight` or `.protNone`;
    ///    pass `installGuard: false` when your allocator made the guard itself);
    /// 3. prefaults the usable range as `request.prefault` asks (top down, never into the guard), then,
    ///    for `.canary`, writes the canary at the usable bottom (`Stack.checkCanary` reads it back);
    /// 4. registers the guard in the guard registry, so an overflow names the fiber instead of dying with
    ///    a bare SIGSEGV.
    ///
    /// The returned stack holds the registration and ends it when it is given back, before your
    /// `release` runs: your allocator never registers or unregisters anything. On an error nothing is
    /// registered and the memory is still yours to unmap. `tag` is yours (`StackDescriptor.tag`).
    public static func guarded(
        _ layout: StackLayout, request: StackRequest, mechanism: GuardMechanism, installGuard: Bool = true,
        allocator: any StackAllocator, tag: UInt = 0, logger: Logger? = nil
    ) throws(StackError) -> Stack {
        if let placement = request.placement {
            try NUMABinding.apply(placement, to: layout.base..<layout.top, untouched: true)
        }
        let guarded = layout.sizes.guardSize > 0 && mechanism.traps
        if guarded, installGuard {
            try GuardInstaller(mode: mechanism == .lightweight ? .lightweight : .protNone).install(on: layout.guardRange)
        }
        if let logger {
            try Prefault.apply(request.prefault, to: layout, logger: logger)
        } else {
            try Prefault.apply(request.prefault, to: layout)
        }
        if !guarded, mechanism == .canary { Canary.write(layout) }
        let descriptor = StackDescriptor(
            layout: layout, guardMechanism: guarded ? mechanism : (mechanism == .canary ? .canary : .none),
            node: request.placement?.homeNode, tag: tag)
        return try registering(descriptor, allocator: allocator)
    }

    /// The stack of a finished `descriptor`, holding the registration of its guard when it has a hardware
    /// guard. For allocators whose guards and prefault need more than `guarded` does (huge pages, slabs).
    package static func registering(_ descriptor: StackDescriptor, allocator: any StackAllocator) throws(StackError) -> Stack {
        let guarded = descriptor.layout.sizes.guardSize > 0 && descriptor.guardMechanism.traps
        guard guarded else { return Stack(descriptor: descriptor, allocator: allocator) }
        let registration = try GuardRegistry.register(descriptor.layout)
        return Stack(descriptor: descriptor, allocator: allocator, guardRegistration: registration)
    }

    /// Throws when this stack is not what its descriptor claims, with probes that cannot fault: a page of
    /// it is not mapped (`.stackNotMapped`: a hardware guard must be reserved, not a hole another mapping
    /// can take), its top byte cannot be written back (`.stackNotWritable`: a fiber's first frame goes
    /// there), its usable bottom cannot be read (`.guardReachesUsable`), or its guard is not there
    /// (`.guardMissing`: a page of a hardware guard can be read, the one next to the usable bottom, where
    /// an overflow arrives first, or the lowest; or a `.canary` was never written). A consumer of an
    /// allocator outside this package (the scheduler) asks this of each new stack; throws `.probeFailed`
    /// when the probes themselves are refused (a seccomp profile).
    package func checkClaims() throws(StackError) {
        let layout = descriptor.layout
        let mustBeMapped = guardMechanism.traps ? layout.base..<layout.top : layout.usableBottom..<layout.top
        if let page = try Probe.firstUnmappedPage(in: mustBeMapped) { throw .stackNotMapped(stack: layout, page: page) }
        guard try Probe.isWritable(layout.top - 1) else {
            throw .stackNotWritable(stack: layout, address: layout.top - 1)
        }
        guard try Probe.isAccessible(layout.usableBottom) else { throw .guardReachesUsable(stack: layout) }
        if guardMechanism == .canary {
            guard Canary.isIntact(layout) else {
                throw .guardMissing(stack: layout, mechanism: .canary, readablePage: nil)
            }
            return
        }
        guard guardMechanism.traps, !layout.guardRange.isEmpty else { return }
        let nextToUsable = layout.usableBottom - UInt(systemPageSize)
        for page in [nextToUsable, layout.guardRange.lowerBound] where try Probe.isAccessible(page) {
            throw .guardMissing(stack: layout, mechanism: guardMechanism, readablePage: page)
        }
    }
}
