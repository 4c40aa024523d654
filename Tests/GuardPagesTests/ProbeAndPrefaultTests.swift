import CFaultTrap
import Glibc
@_spi(Benchmarks) import GuardPages
import Logging
import StackTestSupport
import Testing

/// A real guarded mapping for the duration of a test.
final class ScratchStack {
    let layout: StackLayout

    init(usable: Int = 256 << 10, guardSize: Int = 64 << 10, mode: GuardMode = .automatic) throws {
        let sizes = try StackSizes(usableSize: usable, guardSize: guardSize)
        let address = mmap(nil, sizes.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        try #require(address != MAP_FAILED)
        layout = try StackLayout(base: UInt(bitPattern: address), sizes: sizes)
        try GuardInstaller(mode: mode).install(on: layout.guardRange)
    }

    deinit { precondition(munmap(UnsafeMutableRawPointer(bitPattern: layout.base), layout.sizes.total) == 0) }
}

@Suite("Non-faulting probes and prefault strategies")
struct ProbeAndPrefaultTests {
    static var guardModes: [GuardMode] {
        GuardMode.forcible
    }

    @Test("Every guard page probes inaccessible, usable pages accessible, without a fault", arguments: guardModes)
    func guardProbe(mode: GuardMode) throws {
        let stack = try ScratchStack(mode: mode)
        #expect(try Probe.accessiblePages(in: stack.layout.guardRange) == 0)
        #expect(try Probe.isAccessible(stack.layout.usableBottom))
        #expect(try Probe.isAccessible(stack.layout.top - 1))
        #expect(try !Probe.isAccessible(stack.layout.usableBottom - 1))
    }

    @Test("A written-back byte keeps its value; a read-only page and a guard are not writable", arguments: guardModes)
    func writableProbe(mode: GuardMode) throws {
        let stack = try ScratchStack(mode: mode)
        let top = UnsafeMutablePointer<UInt8>(bitPattern: stack.layout.top - 1)!
        top.pointee = 0xA5
        #expect(try Probe.isWritable(stack.layout.top - 1))
        #expect(top.pointee == 0xA5)
        #expect(try !Probe.isWritable(stack.layout.usableBottom - 1))
        try #require(mprotect(UnsafeMutableRawPointer(bitPattern: stack.layout.usableBottom), systemPageSize, PROT_READ) == 0)
        #expect(try !Probe.isWritable(stack.layout.usableBottom))
        #expect(try Probe.isAccessible(stack.layout.usableBottom))
    }

    @Test("A mapped range is not reported unmapped; an unmapped one is", needsNoSanitizer)
    func unmapped() async {
        // In a child: another test could map the freed range before it is probed.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let stack = try ScratchStack()
            let mapped = try Probe.isUnmapped(stack.layout.usableRange)
            ensure(!mapped, "a mapped range reported unmapped")
            let address = mmap(nil, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            ensure(address != MAP_FAILED, "mmap failed")
            ensure(munmap(address, 65536) == 0, "munmap: errno \(errno)")
            let range = UInt(bitPattern: address)..<UInt(bitPattern: address) + 65536
            let unmapped = try Probe.isUnmapped(range)
            ensure(unmapped, "an unmapped range reported mapped")
        }
    }

    @Test("touch and populate make every usable page resident and no guard page; none leaves at most one",
          arguments: PrefaultStrategy.allCases, guardModes)
    func residency(strategy: PrefaultStrategy, mode: GuardMode) throws {
        let stack = try ScratchStack(mode: mode)
        try Prefault.apply(PrefaultPolicy(strategy), to: stack.layout, logger: Logger(label: "test"))
        let report = try StackProbeReport(layout: stack.layout)
        #expect(report.residentGuardPages == 0)
        #expect(report.guardIsSound)
        if strategy == .none {
            #expect(report.residentUsablePages <= 1)
        } else {
            #expect(report.residentUsablePages == report.usablePages)
        }
    }

    @Test("touch goes from the top down, the order a stack grows: when it first reaches the middle page, every page above is resident and none below",
          needsNoSanitizer)
    func touchOrder() async {
        // In a child of its own: the trap is a SIGSEGV handler.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let stack: ScratchStack
            do {
                stack = try ScratchStack(usable: 64 << 10)
            } catch {
                fail("a scratch stack: \(error)")
            }
            let usable = stack.layout.usableRange
            let pages = usable.count / systemPageSize
            let middle = usable.lowerBound + UInt(pages / 2 * systemPageSize)
            let armed = fs_test_arm_fault_trap(
                UnsafeMutableRawPointer(bitPattern: usable.lowerBound), UnsafeMutableRawPointer(bitPattern: middle),
                UnsafeMutableRawPointer(bitPattern: usable.upperBound))
            ensure(armed == 0, "arming the trap: errno \(armed)")
            do {
                try Prefault.apply(PrefaultPolicy(.touch), to: stack.layout, logger: Logger(label: "test"))
            } catch {
                fail("touch: \(error)")
            }
            var fired: Int32 = 0
            var below = 0
            var above = 0
            fs_test_fault_trap_result(&fired, &below, &above)
            let abovePages = pages - pages / 2 - 1
            ensure(fired == 1 && above == abovePages && below == 0,
                   "at the middle page: \(above) of \(abovePages) pages above resident, \(below) of \(pages / 2) below (trap fired: \(fired))")
        }
    }

    @Test("A partial depth makes exactly the top pages resident", arguments: [PrefaultStrategy.touch, .populate])
    func partialDepth(strategy: PrefaultStrategy) throws {
        let stack = try ScratchStack()
        try Prefault.apply(PrefaultPolicy(strategy, depth: .top(bytes: 5 * 4096 + 1)), to: stack.layout, logger: Logger(label: "test"))
        let residency = try Probe.residency(of: stack.layout.usableRange)
        let expectedPages = 6 * 4096 / systemPageSize
        #expect(residency.suffix(expectedPages).allSatisfy { $0 })
        #expect(residency.dropLast(expectedPages).allSatisfy { !$0 })
    }

    @Test("Forcing lightweight guards on a kernel without them is a named error")
    func forcedLightweight() throws {
        if GuardInstaller.lightweightGuardsSupported {
            #expect(try GuardInstaller(mode: .lightweight).mechanism == .lightweight)
        } else {
            #expect(throws: StackError.self) { try GuardInstaller(mode: .lightweight) }
        }
        #expect(try GuardInstaller(mode: .protNone).mechanism == .protNone)
    }
}
