@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import OverflowDetection
import CStackSupport
import Glibc
@_spi(Benchmarks) import StackAllocators
import StackTestSupport
import SystemPackage
import Testing

// Exit tests: failure injection is process-wide, so each runs in a child of its own where no other test
// maps memory or hits an injected failure. A failed check (`ensure`) shows its message in the parent.

/// Injects one failure into an allocation and checks, with the kernel, that it left nothing behind.
enum InjectedFailure {
    static let guardInstall = FailureInjection.Step.advise(Int32(FS_MADV_GUARD_INSTALL))
    static let populate = FailureInjection.Step.advise(Int32(FS_MADV_POPULATE_WRITE))
    static let hugePageAdvice = FailureInjection.Step.advise(Int32(FS_MADV_HUGEPAGE))

    /// The step that installs `mechanism`'s guards.
    static func guardStep(_ mechanism: GuardMechanism) -> FailureInjection.Step {
        mechanism == .lightweight ? guardInstall : .protect
    }

    /// The steps that carve a new slab slot with `mechanism`'s guards: under strict overcommit making it
    /// writable (mprotect: all of it with mprotect guards), then its guard.
    static func carveSteps(_ mechanism: GuardMechanism, strict: Bool) -> [FailureInjection.Step] {
        strict && mechanism == .lightweight ? [.protect, guardInstall] : [guardStep(mechanism)]
    }

    /// Every guard mode this kernel can force, as configured both ways: under strict overcommit and not.
    static var slabConfigurations: [SlabStackAllocator.Configuration] {
        GuardMode.forcible.flatMap { mode in
            [false, true].map { strict in
                var configuration = SlabStackAllocator.Configuration(usableSize: 64 << 10, stacksPerRegion: 8, guardMode: mode)
                configuration.strictOvercommitOverride = strict
                return configuration
            }
        }
    }

    /// Makes `step` fail (after `skip` calls that succeed), runs `attempt`, and requires that it threw,
    /// that every range mmap returned during it is absent from /proc/self/maps, and that the guard
    /// registry holds what it held before.
    static func check(
        _ name: String, _ step: FailureInjection.Step, after skip: Int = 0, mapsFirst: Bool = true,
        _ attempt: () throws(StackError) -> Stack
    ) throws(StackError) {
        let registered = GuardRegistry.count
        FailureInjection.fail(step, with: .ioError, after: skip)
        var threw = false
        do {
            _ = try attempt()
        } catch {
            threw = true
        }
        let mapped = FailureInjection.reset()
        ensure(threw, "\(name): the allocation succeeded although \(step) failed")
        ensure(!mapsFirst || !mapped.isEmpty, "\(name): nothing was mapped before \(step) failed")
        for range in mapped {
            let left = try KernelMaps.mappedBytes(in: range)
            ensure(left == 0, "\(name): \(left) bytes of [0x\(String(range.lowerBound, radix: 16)), 0x\(String(range.upperBound, radix: 16))) still mapped after \(step) failed")
        }
        ensure(GuardRegistry.count == registered, "\(name): \(GuardRegistry.count - registered) stacks still registered after \(step) failed")
    }

    /// Whether this machine takes an mbind to node 0 (allocating `request` with it also warms up the
    /// lazily read topology, so no check sees that work).
    static func bindable(_ allocate: (StackRequest) throws(StackError) -> Stack, _ request: StackRequest) -> Bool {
        var placed = request
        placed.placement = .bind(0)
        return (try? allocate(placed)) != nil
    }
}

@Suite("Error paths unmap what they mapped", needsNoSanitizer)
struct ErrorPathTests {
    @Test("mmap: a failure at mmap, mbind, the guard, prefault or registration leaves nothing mapped or registered")
    func mmap() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            for mode in GuardMode.forcible {
                let allocator = try MmapStackAllocator(guardMode: mode)
                let request = StackRequest(usableSize: 64 << 10, prefault: PrefaultPolicy(.populate))
                _ = try allocator.allocate(request)
                let name = "mmap \(mode)"
                try InjectedFailure.check(name, .map, mapsFirst: false) { () throws(StackError) in try allocator.allocate(request) }
                try InjectedFailure.check(name, InjectedFailure.guardStep(allocator.guardMechanism)) { () throws(StackError) in
                    try allocator.allocate(request)
                }
                try InjectedFailure.check(name, InjectedFailure.populate) { () throws(StackError) in try allocator.allocate(request) }
                try InjectedFailure.check(name, .register) { () throws(StackError) in try allocator.allocate(request) }
                if InjectedFailure.bindable(allocator.allocate, request) {
                    var placed = request
                    placed.placement = .bind(0)
                    try InjectedFailure.check(name, .bind) { () throws(StackError) in try allocator.allocate(placed) }
                }
                ensure(allocator.stats.live == 0, "\(name): \(allocator.stats.live) stacks counted live")
            }
        }
    }

    @Test("slab: a failure at the region's mmap, mbind, carving a slot, prefault or registration leaves nothing mapped or registered")
    func slab() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            for configuration in InjectedFailure.slabConfigurations {
                let request = StackRequest(usableSize: 64 << 10, prefault: PrefaultPolicy(.populate))
                let warm = try SlabStackAllocator(configuration)
                _ = try warm.allocate(request)
                let strict = configuration.strictOvercommitOverride!
                let name = "slab \(configuration.guardMode)\(strict ? ", strict overcommit" : "")"
                // A new slab each time, so each attempt maps a region of its own.
                let carving = InjectedFailure.carveSteps(warm.guardMechanism, strict: strict).map { ($0, true) }
                for (step, mapsFirst) in [(FailureInjection.Step.map, false)] + carving + [(InjectedFailure.populate, true), (.register, true)] {
                    let slab = try SlabStackAllocator(configuration)
                    try InjectedFailure.check(name, step, mapsFirst: mapsFirst) { () throws(StackError) in try slab.allocate(request) }
                }
                var placedConfiguration = configuration
                placedConfiguration.placement = .bind(0)
                if let placed = try? SlabStackAllocator(placedConfiguration), (try? placed.allocate(request)) != nil {
                    let slab = try SlabStackAllocator(placedConfiguration)
                    try InjectedFailure.check(name, .bind) { () throws(StackError) in try slab.allocate(request) }
                }
            }
        }
    }

    @Test("slab: a slot whose carving failed in a live region is carved again, guarded and registered, before a new slot")
    func slabRetriesFailedGuard() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let attempts = InjectedFailure.slabConfigurations.flatMap { configuration in
                let mechanism: GuardMechanism = configuration.guardMode == .lightweight ? .lightweight : .protNone
                return InjectedFailure.carveSteps(mechanism, strict: configuration.strictOvercommitOverride!).map { (configuration, $0) }
            }
            for (var configuration, step) in attempts {
                configuration.stacksPerRegion = 64
                let mode = configuration.guardMode
                let slab = try SlabStackAllocator(configuration)
                let request = StackRequest(usableSize: 64 << 10)
                let first = try slab.allocate(request)  // keeps the region mapped
                // The slots carved with the first (lightweight guards), so the next allocation carves.
                let ahead = mode == .lightweight ? SlabStackAllocator.guardWindow - 1 : 0
                let carvedAhead = try HeldStacks(ahead, from: slab)
                let registered = GuardRegistry.count
                FailureInjection.fail(step, with: .ioError)
                let failed = (try? slab.allocate(request)) == nil
                _ = FailureInjection.reset()
                ensure(failed, "\(mode): the allocation succeeded although \(step) failed")
                ensure(GuardRegistry.count == registered, "\(mode): the slot whose guard failed is still registered")
                let second = try slab.allocate(request)
                let layout = second.descriptor.layout
                ensure(
                    layout.base == first.descriptor.layout.base + UInt((ahead + 1) * layout.sizes.total),
                    "\(mode): the slot whose guard failed was not the next one used")
                withExtendedLifetime(carvedAhead) {}
                ensure(GuardRegistry.entry(forStackAt: layout.usableBottom) != nil, "\(mode): the reused slot is not registered")
                let accessible = try Probe.accessiblePages(in: layout.guardRange)
                ensure(accessible == 0, "\(mode): \(accessible) pages of the reused slot's guard are accessible")
                memset(second.usableBottom, 0xAB, second.usableSize)
            }
        }
    }

    @Test("pool: a failure in its inner allocator or at prefault leaves nothing mapped or registered")
    func pool() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let request = StackRequest(usableSize: 64 << 10)
            let populated = StackRequest(usableSize: 64 << 10, prefault: PrefaultPolicy(.populate))
            let inner = try MmapStackAllocator()
            // Keeps no idle stack: every allocation asks the inner allocator.
            let pool = try PooledStackAllocator(
                wrapping: inner, .init(stack: request, minimumIdle: 0, maximumIdle: 0, threadCacheSize: 0))
            _ = try pool.allocate(populated)
            for (step, mapsFirst) in [
                (FailureInjection.Step.map, false), (InjectedFailure.guardStep(inner.guardMechanism), true),
                (.register, true), (InjectedFailure.populate, true),
            ] {
                try InjectedFailure.check("pool", step, mapsFirst: mapsFirst) { () throws(StackError) in try pool.allocate(populated) }
            }
            // A pool that keeps idle stacks gives a stack whose prefault failed back, rather than keeping it.
            let keeping = try PooledStackAllocator(wrapping: inner, .init(stack: request, minimumIdle: 0, threadCacheSize: 0))
            try InjectedFailure.check("pool", InjectedFailure.populate) { () throws(StackError) in try keeping.allocate(populated) }
            ensure(keeping.stats.cached == 0, "pool: the stack whose prefault failed was kept")
            ensure(pool.stats.live == 0 && inner.stats.live == 0, "pool: stacks counted live after the failures")
        }
    }

    @Test("huge pages: a failure at any step of a region, in every backing and packed, leaves nothing mapped or registered",
          .enabled(if: !HugePages.availableBackings.isEmpty, "needs free huge pages (/proc/sys/vm/nr_hugepages) or THP mode madvise or always (/sys/kernel/mm/transparent_hugepage/enabled)"))
    func hugePages() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let allocator = HugePageStackAllocator()
            let populate = PrefaultPolicy(.populate)
            var requests: [(String, StackRequest)] = [("small pages", StackRequest(usableSize: 64 << 10, prefault: populate))]
            for backing in HugePages.availableBackings {
                requests.append(("\(backing)", HugePages.request(backing, prefault: populate)))
            }
            for (name, request) in requests {
                _ = try allocator.allocate(request)
                // The reservation, then the fixed mapping of the backing.
                try InjectedFailure.check(name, .map, mapsFirst: false) { () throws(StackError) in try allocator.allocate(request) }
                try InjectedFailure.check(name, .map, after: 1) { () throws(StackError) in try allocator.allocate(request) }
                try InjectedFailure.check(name, InjectedFailure.populate) { () throws(StackError) in try allocator.allocate(request) }
                try InjectedFailure.check(name, .register) { () throws(StackError) in try allocator.allocate(request) }
                if name == "\(HugePageRequest.Backing.transparent)" {
                    try InjectedFailure.check(name, InjectedFailure.hugePageAdvice) { () throws(StackError) in
                        try allocator.allocate(request)
                    }
                }
                if InjectedFailure.bindable(allocator.allocate, request) {
                    var placed = request
                    placed.placement = .bind(0)
                    try InjectedFailure.check(name, .bind) { () throws(StackError) in try allocator.allocate(placed) }
                }
            }
            for backing in HugePages.availableBackings {
                let packed = HugePages.request(backing, usable: 64 << 10, packing: .packed)
                _ = try allocator.allocate(packed)  // maps a region and gives it back
                let name = "\(backing), packed"
                try InjectedFailure.check(name, .map, after: 1) { () throws(StackError) in try allocator.allocate(packed) }
                try InjectedFailure.check(name, InjectedFailure.populate) { () throws(StackError) in try allocator.allocate(packed) }
            }
            ensure(allocator.stats.live == 0, "huge pages: \(allocator.stats.live) stacks counted live")
        }
    }
}
