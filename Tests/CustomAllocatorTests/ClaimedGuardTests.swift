import CSandbox
import FiberScheduler
import Glibc
import StackAllocators
import StackTestSupport
import Testing

@Suite("The scheduler checks the stacks an allocator of yours hands out: their size, their memory and their guard")
struct ClaimedGuardTests {
    @Test("A stack whose claimed guard is not there is refused, naming a page that can be read", arguments: FaultyGuard.all)
    func missingGuardIsRefused(_ fault: FaultyGuard) throws {
        let allocator = ClaimingAllocator(fault)
        var config = oneWorker(allocator)
        // A canary is no guard against a frame that skips it: accept that, to reach the canary's own check.
        config.allowGuardSmallerThanLargestFrame = fault.claim == .canary
        let error = try #require(throws: SchedulerError.self) { try FiberScheduler(config: config) }
        let underlying = try #require(error.underlying, "\(error)")
        #expect(error.code == .stackFailed && underlying.code == .allocatorFailed, "\(error)")
        let layout = try #require(allocator.handedOut.withLock { $0.first })
        if let page = fault.readablePage(of: layout) {
            #expect(underlying.message.contains("claims a \(fault.claim) guard"), "\(underlying)")
            #expect(underlying.message.contains("page at 0x\(String(page, radix: 16)) can be read"), "\(underlying)")
        } else {
            #expect(underlying.message.contains("claims a canary"), "\(underlying)")
        }
        #expect(underlying.fix.contains("Stack.guarded"), "\(underlying)")
        #expect(allocator.live.withLock { $0 } == 0, "a refused stack was not given back")
    }

    @Test("A pool over such an allocator is checked as well")
    func poolOverMissingGuardIsRefused() throws {
        let pool = try PooledStackAllocator(wrapping: ClaimingAllocator(FaultyGuard.all[0]))
        let error = try #require(throws: SchedulerError.self) { try FiberScheduler(config: oneWorker(pool)) }
        #expect(error.underlying?.code == .allocatorFailed, "\(error)")
    }

    @Test("A guard range that does not fault is no guard against the largest frame")
    func rangeWithoutFaultGetsNoCredit() throws {
        let allocator = ClaimingAllocator(FaultyGuard(claim: .none, protected: .nothing))
        let error = try #require(throws: SchedulerError.self) { try FiberScheduler(config: oneWorker(allocator)) }
        #expect(error.code == .invalidConfiguration && error.underlying?.code == .guardSmallerThanFrame, "\(error)")
        #expect(error.message.contains("a stack without a guard that faults"), "\(error)")
    }

    @Test("A stack with fewer usable bytes than requested is refused")
    func smallerStackIsRefused() throws {
        let error = try #require(throws: SchedulerError.self) { try FiberScheduler(config: oneWorker(HalvingAllocator())) }
        #expect(error.code == .stackFailed && error.underlying?.code == .allocatorFailed, "\(error)")
        #expect(error.message.contains("HalvingAllocator handed out"), "\(error)")
        #expect(error.message.contains("usable 32768 B") && error.message.contains("a request of 65536 usable bytes"), "\(error)")
    }

    @Test("A stack mapped without PROT_WRITE is refused, naming its top byte")
    func readOnlyStackIsRefused() throws {
        let allocator = ProtectionAllocator(protection: PROT_READ, mechanism: .protNone)
        let error = try #require(throws: SchedulerError.self) { try FiberScheduler(config: oneWorker(allocator)) }
        #expect(error.code == .stackFailed && error.underlying?.code == .allocatorFailed, "\(error)")
        #expect(error.message.contains("cannot be written at 0x"), "\(error)")
        #expect(error.fix.contains("PROT_READ | PROT_WRITE"), "\(error)")
    }

    @Test("Stack.guarded writes the canary it claims, and the scheduler runs on such stacks")
    func guardedCanaryIsWritten() throws {
        let allocator = ProtectionAllocator(mechanism: .canary)
        let stack = try allocator.allocate(StackRequest(usableSize: 64 << 10))
        #expect(stack.descriptor.guardMechanism == .canary)
        #expect(throws: Never.self) { try stack.checkCanary() }
        stack.release()
        var config = oneWorker(allocator)
        config.allowGuardSmallerThanLargestFrame = true
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        #expect(try scheduler.submit { 6 * 7 }.wait() == 42)
    }

    @Test("A stack not wholly mapped, or whose guard reaches into its usable bytes, is refused, naming the page", arguments: MappingFault.allCases)
    func mappingFaultIsRefused(_ fault: MappingFault) throws {
        let allocator = MisguardingAllocator(fault)
        let error = try #require(throws: SchedulerError.self) { try FiberScheduler(config: oneWorker(allocator)) }
        #expect(error.code == .stackFailed && error.underlying?.code == .allocatorFailed, "\(error)")
        let layout = try #require(allocator.handedOut.withLock { $0.first })
        let page = fault == .guardUnmapped ? layout.base : layout.usableBottom
        let seen = fault == .guardReachesUsable ? "cannot be read at 0x" : "is not mapped at 0x"
        #expect(error.message.contains("\(seen)\(String(page, radix: 16))"), "\(error)")
        #expect(allocator.live.withLock { $0 } == 0, "a refused stack was not given back")
    }

    @Test("A stack that overlaps a live fiber's stack is refused, naming both", arguments: [ArenaAllocator.Stride.none, .usableSize])
    func overlappingStackIsRefused(_ stride: ArenaAllocator.Stride) throws {
        let allocator = try ArenaAllocator(stride: stride)
        var config = oneWorker(allocator)
        if stride == .none {
            // Two workers: without the check, both would run jobs on the same memory at once.
            config.workerCount = 2
        } else {
            // One worker making two fibers, one after the other: with two, the second stack's guard could
            // cover the first stack's top before the first is checked, and be refused for that instead.
            config.initialPoolSize = 2
            config.targetPoolSize = 2
        }
        let error = try #require(throws: SchedulerError.self) { try FiberScheduler(config: config) }
        #expect(error.code == .stackFailed && error.underlying?.code == .allocatorFailed, "\(error)")
        let first = allocator.layout(0), second = allocator.layout(1)
        #expect(error.message.contains("ArenaAllocator handed out the \(second)"), "\(error)")
        #expect(error.message.contains("the \(first) of a live fiber"), "\(error)")
        #expect(error.message.contains("spans [0x\(String(second.base, radix: 16)), 0x\(String(second.top, radix: 16)))"), "\(error)")
        #expect(error.fix.contains("release(_:token:)") && error.message.contains("kept, never released"), "\(error)")
        // Only the live fiber's stack comes back (when the failed scheduler ends): the refused one, released,
        // would have handed the allocator the live fiber's memory while it ran.
        #expect(allocator.released.withLock { $0 } == [first], "\(allocator.released.withLock { $0 })")
    }

    @Test("A stack handed out again once its fiber is gone is accepted")
    func reusedStackIsAccepted() throws {
        let allocator = try ArenaAllocator(stride: .none)
        for _ in 0..<2 {
            let scheduler = try FiberScheduler(config: oneWorker(allocator))
            #expect(try scheduler.submit { 6 * 7 }.wait() == 42)
            scheduler.shutdown()
        }
        #expect(allocator.handedOut.withLock { $0 } == 2)
    }

    @Test("A batch of another number of stacks than asked for is refused", arguments: [-1, 1])
    func miscountedBatchIsRefused(_ difference: Int) throws {
        let allocator = MiscountingAllocator(difference: difference)
        var config = oneWorker(allocator)
        config.initialPoolSize = 4
        config.targetPoolSize = 4
        config.maxPoolSize = 4
        let error = try #require(throws: SchedulerError.self) { try FiberScheduler(config: config) }
        #expect(error.code == .stackFailed && error.underlying?.code == .allocatorFailed, "\(error)")
        #expect(error.message.contains("MiscountingAllocator handed \(4 + difference) stacks"), "\(error)")
        #expect(error.message.contains("allocate(_:count:into:) for 4"), "\(error)")
        #expect(allocator.live == 0, "the stacks of a refused batch were not given back")
    }

    @Test("Where a seccomp profile refuses the probes, the scheduler says it cannot check and runs")
    func refusedProbesAreLogged() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            ensure(fs_test_refuse_process_vm_readv(EPERM) == 0, "seccomp: errno \(errno)")
            let (logger, log) = CapturingLogHandler.logger()
            var config = oneWorker(ClaimingAllocator(FaultyGuard.all[0]))
            config.logger = logger
            let scheduler = try FiberScheduler(config: config)
            let answer = try scheduler.submit { 6 * 7 }.wait()
            scheduler.shutdown()
            let warnings = log.all.filter { $0.level == .warning }
            ensure(answer == 42 && warnings.count == 1, "\(log.all)")
            ensure(warnings[0].message.contains("cannot be checked"), "\(warnings)")
        }
    }
}

/// A guard an allocator claims, and what of it the allocator really made.
struct FaultyGuard: Sendable, CustomTestStringConvertible {
    /// Which pages of the guard range are made inaccessible (with mprotect).
    enum Protected: Sendable { case nothing, lowestPage, highestPage }

    let claim: GuardMechanism
    let protected: Protected

    static let all = [
        FaultyGuard(claim: .protNone, protected: .nothing),
        FaultyGuard(claim: .lightweight, protected: .nothing),
        FaultyGuard(claim: .protNone, protected: .lowestPage),
        FaultyGuard(claim: .protNone, protected: .highestPage),
        FaultyGuard(claim: .canary, protected: .nothing),
    ]

    var testDescription: String { "\(claim), \(protected) protected" }

    /// The first page of the guard that can be read, where the scheduler looks: next to the usable
    /// bottom, then the lowest. Nil for a canary.
    func readablePage(of layout: StackLayout) -> UInt? {
        guard claim != .canary else { return nil }
        return protected == .highestPage ? layout.base : layout.usableBottom - UInt(systemPageSize)
    }
}

/// Maps stacks with a 64 KiB guard range (none for a canary) and claims `fault.claim` for them, having
/// protected only what `fault` says and written no canary.
final class ClaimingAllocator: StackAllocator {
    let fault: FaultyGuard
    let live = Locked(0)
    let handedOut = Locked<[StackLayout]>([])

    init(_ fault: FaultyGuard) { self.fault = fault }

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let sizes = try StackSizes(usableSize: request.usableSize, guardSize: fault.claim == .canary ? 0 : 64 << 10)
        let memory = mmap(nil, sizes.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let memory, memory != MAP_FAILED else { throw StackError(message: "mmap failed", errno: errno) }
        let layout = try StackLayout(base: UInt(bitPattern: memory), sizes: sizes)
        let page = switch fault.protected {
        case .nothing: UInt?.none
        case .lowestPage: layout.base
        case .highestPage: layout.usableBottom - UInt(systemPageSize)
        }
        if let page { precondition(mprotect(UnsafeMutableRawPointer(bitPattern: page), systemPageSize, PROT_NONE) == 0) }
        live.withLock { $0 += 1 }
        handedOut.withLock { $0.append(layout) }
        return Stack(descriptor: StackDescriptor(layout: layout, guardMechanism: fault.claim), allocator: self)
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        live.withLock { $0 -= 1 }
        precondition(munmap(UnsafeMutableRawPointer(bitPattern: descriptor.layout.base), descriptor.layout.sizes.total) == 0)
    }
}

/// Hands out stacks with half the usable bytes asked for (and a real guard).
final class HalvingAllocator: StackAllocator {
    private let inner = GuardedMmapAllocator()

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        try inner.allocate(StackRequest(usableSize: request.usableSize / 2, guardSize: request.guardSize))
    }

    /// Never called: its stacks are the inner allocator's, and go back there.
    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {}
}

/// Maps stacks with `protection` and finishes them with `Stack.guarded(…, mechanism:)`: no guard page for
/// a canary, the requested guard otherwise.
final class ProtectionAllocator: StackAllocator {
    let protection: Int32
    let mechanism: GuardMechanism

    init(protection: Int32 = PROT_READ | PROT_WRITE, mechanism: GuardMechanism) {
        self.protection = protection
        self.mechanism = mechanism
    }

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let sizes = try StackSizes(usableSize: request.usableSize, guardSize: mechanism == .canary ? 0 : request.guardSize)
        let memory = mmap(nil, sizes.total, protection, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let memory, memory != MAP_FAILED else { throw StackError(message: "mmap failed", errno: errno) }
        do {
            return try Stack.guarded(
                StackLayout(base: UInt(bitPattern: memory), sizes: sizes), request: request, mechanism: mechanism, allocator: self)
        } catch {
            precondition(munmap(memory, sizes.total) == 0)
            throw error
        }
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        precondition(munmap(UnsafeMutableRawPointer(bitPattern: descriptor.layout.base), descriptor.layout.sizes.total) == 0)
    }
}

/// Carves stacks of 64 KiB (and a 64 KiB mprotect guard) out of one mapping, `stride` apart, and takes
/// nothing back before it goes: with a stride below a stack's size it hands out overlapping stacks.
final class ArenaAllocator: StackAllocator {
    enum Stride: Sendable { case none, usableSize }

    static let sizes = try! StackSizes(usableSize: 64 << 10, guardSize: 64 << 10)
    static let capacity = 8
    let stride: Int
    let arena: UInt
    let handedOut = Locked(0)
    /// What `release` was given, in order.
    let released = Locked<[StackLayout]>([])

    init(stride: Stride) throws {
        self.stride = stride == .none ? 0 : Self.sizes.usableSize
        let length = Self.sizes.total * Self.capacity
        let memory = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let memory, memory != MAP_FAILED else { throw StackError(message: "mmap failed", errno: errno) }
        arena = UInt(bitPattern: memory)
    }

    deinit { precondition(munmap(UnsafeMutableRawPointer(bitPattern: arena), Self.sizes.total * Self.capacity) == 0) }

    /// The `index`th stack handed out.
    func layout(_ index: Int) -> StackLayout {
        try! StackLayout(base: arena + UInt(index * stride), sizes: Self.sizes)
    }

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let index = handedOut.withLock { count in
            defer { count += 1 }
            return count
        }
        precondition(request.usableSize <= Self.sizes.usableSize && index < Self.capacity)
        let layout = layout(index)
        precondition(mprotect(UnsafeMutableRawPointer(bitPattern: layout.base), Self.sizes.guardSize, PROT_NONE) == 0)
        return Stack(descriptor: StackDescriptor(layout: layout, guardMechanism: .protNone), allocator: self)
    }

    /// Records the release and unmaps nothing: the arena goes as a whole.
    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        released.withLock { $0.append(descriptor.layout) }
    }
}

/// Hands `difference` more stacks (fewer, when negative) to `allocate(_:count:into:)` than asked for.
final class MiscountingAllocator: StackAllocator {
    let difference: Int
    private let inner = TrackingAllocator(wrapping: GuardedMmapAllocator())

    init(difference: Int) { self.difference = difference }

    /// Its stacks not yet given back.
    var live: Int { inner.live.load(ordering: .relaxed) }

    func allocate(_ request: StackRequest) throws(StackError) -> Stack { try inner.allocate(request) }

    func allocate(_ request: StackRequest, count: Int, into body: (consuming Stack) throws(StackError) -> Void) throws(StackError) {
        for _ in 0..<(count + difference) { try body(try allocate(request)) }
    }

    /// Never called: its stacks are the inner allocator's, and go back there.
    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {}
}

/// How `MisguardingAllocator` gets a stack's memory wrong.
enum MappingFault: CaseIterable, Sendable {
    /// The guard range is unmapped rather than protected: another mapping can land there.
    case guardUnmapped
    /// The lowest usable page is unmapped.
    case usableBottomUnmapped
    /// The guard is protected one page too far, over the lowest usable page.
    case guardReachesUsable
}

/// Maps a stack of 64 KiB with a 64 KiB guard range, gets its memory wrong per `fault`, and claims a
/// `.protNone` guard.
final class MisguardingAllocator: StackAllocator {
    let fault: MappingFault
    let live = Locked(0)
    let handedOut = Locked<[StackLayout]>([])

    init(_ fault: MappingFault) { self.fault = fault }

    /// Where the stacks go: terabytes above the program and its heap, far below where the kernel places
    /// mappings, so no other mapping of the process lands in a hole left in one of them before the
    /// scheduler looks; a range ThreadSanitizer and AddressSanitizer accept as program memory.
    private static let region = Locked<UInt>(0x5900_0000_0000)
    private static let mapFixedNoReplace: Int32 = 0x100000

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let sizes = try StackSizes(usableSize: request.usableSize, guardSize: 64 << 10)
        let hint = Self.region.withLock { next in
            defer { next += 1 << 30 }
            return next
        }
        let memory = mmap(
            UnsafeMutableRawPointer(bitPattern: hint), sizes.total, PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | Self.mapFixedNoReplace, -1, 0)
        guard let memory, memory != MAP_FAILED else { throw StackError(message: "mmap failed", errno: errno) }
        let page = systemPageSize
        switch fault {
        case .guardUnmapped: precondition(munmap(memory, sizes.guardSize) == 0)
        case .usableBottomUnmapped:
            precondition(mprotect(memory, sizes.guardSize, PROT_NONE) == 0)
            precondition(munmap(memory + sizes.guardSize, page) == 0)
        case .guardReachesUsable: precondition(mprotect(memory, sizes.guardSize + page, PROT_NONE) == 0)
        }
        let layout = try StackLayout(base: UInt(bitPattern: memory), sizes: sizes)
        live.withLock { $0 += 1 }
        handedOut.withLock { $0.append(layout) }
        return Stack(descriptor: StackDescriptor(layout: layout, guardMechanism: .protNone), allocator: self)
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        live.withLock { $0 -= 1 }
        // munmap of a range with holes unmaps what is there.
        precondition(munmap(UnsafeMutableRawPointer(bitPattern: descriptor.layout.base), descriptor.layout.sizes.total) == 0)
    }
}
