import CJumpFixtures
import FiberScheduler
import Glibc
import Testing

/// One worker, three 256 KiB fibers with 4 KiB guards (smaller than a 32 KiB frame, on purpose), on
/// one slab region: the stacks lie next to each other, in the order the pool made them.
private func jumpableScheduler() throws -> FiberScheduler {
    let slab = try SlabStackAllocator(.init(usableSize: 256 << 10, guardSize: 4096, stacksPerRegion: 4))
    var config = FiberConfig(allocator: slab)
    config.usableSize = 256 << 10
    config.guardSize = 4096
    config.allowGuardSmallerThanLargestFrame = true
    config.workerCount = 1
    config.initialPoolSize = 3
    config.targetPoolSize = 3
    config.maxPoolSize = 3
    return try FiberScheduler(config: config)
}

/// Runs `attacker` on the highest stack once a victim, holding a 24 KiB pattern in its frame, is suspended
/// on the stack directly below it; returns the victim's counter. The pool hands out its newest fiber
/// first, so the job started first gets the highest slab slot.
private func withVictimBelow(
    _ scheduler: FiberScheduler, gate: JobCounter, attacker: @escaping @Sendable (FiberInfo) -> Void
) -> JobCounter {
    let go = JobCounter(1)
    let attackerDone = JobCounter()
    scheduler.submit(counter: attackerDone) {
        try go.wait()
        let own = FiberScheduler.currentFiber!.stack.layout
        let victim = scheduler.fibers.first { $0.stack.layout.top == own.guardRange.lowerBound }
        precondition(victim != nil, "no stack directly below the running one")
        attacker(victim!)
    }
    while scheduler.stats.workers[0].suspensions < 1 { usleep(1000) }
    let victims = JobCounter()
    scheduler.submit(counter: victims) {
        var pattern = InlineArray<24576, UInt8>(repeating: 0xA5)
        try gate.wait()
        precondition(pattern[0] == 0xA5 && pattern[24575] == 0xA5, "a suspended fiber's frame changed")
        pattern[1] = 0
    }
    while scheduler.stats.workers[0].suspensions < 2 { usleep(1000) }
    go.decrement()
    _ = try? attackerDone.wait()
    return victims
}

@Suite("A frame larger than the guard")
struct GuardJumpTests {
    @Test("that recurses past its own guard is blamed on the running fiber, not on the stack it lands in")
    func blamesRunningFiber() async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) {
            let scheduler = try jumpableScheduler()
            _ = withVictimBelow(scheduler, gate: JobCounter(1)) { _ in
                say("running: \(FiberScheduler.currentFiber!.label)")
                _ = fs_test_sparse_recursion(.max, 64)
            }
        }
        let stderr = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        let running = try #require(stderr.firstMatch(of: #/running: (.+)\n/#)?.1, "\(stderr)")
        #expect(stderr.contains("stack overflow in fiber \"\(running)\""), "\(stderr)")
    }

    @Test("that writes into a suspended neighbour's top ends the process when the neighbour resumes")
    func neighbourCanaryCaught() async throws {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            let scheduler = try jumpableScheduler()
            let gate = JobCounter(1)
            let victims = withVictimBelow(scheduler, gate: gate) { victim in
                say("victim: \(victim.label)")
                // One frame skips the 4 KiB guard and writes the neighbour's highest 64 bytes, then returns.
                let own = FiberScheduler.currentFiber!.stack.layout
                fs_test_write_below(own.guardRange.lowerBound - 64, 64, 0x5A)
            }
            gate.decrement()
            try victims.wait()
            say("the overwritten neighbour resumed unnoticed")
            exit(0)
        }
        let stderr = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        let victim = try #require(stderr.firstMatch(of: #/victim: (.+)\n/#)?.1, "\(stderr)")
        #expect(stderr.contains("the top of the stack of \(victim) ["), "\(stderr)")
        #expect(stderr.contains("was overwritten while the fiber was not running"), "\(stderr)")
    }

    /// Swift's one runtime-sized stack allocation: `withUnsafeTemporaryAllocation` takes stack space without
    /// a probe when the runtime judges it safe, judging by the thread's stack, not the fiber's. Past the
    /// guard's size it must come from the heap on a fiber, or it could jump the guard without touching it.
    @Test("withUnsafeTemporaryAllocation larger than the guard on a fiber comes from the heap, not from or below the fiber's stack",
          arguments: [16 << 10, 96 << 10, 1 << 20])
    func temporaryAllocationOnAFiber(_ bytes: Int) throws {
        let scheduler = try FiberScheduler(config: testConfig(workers: 1))
        defer { scheduler.shutdown() }
        let (address, stack) = try scheduler.submit { () -> (UInt, Range<UInt>) in
            let layout = FiberScheduler.currentFiber!.stack.layout
            let address = withUnsafeTemporaryAllocation(byteCount: bytes, alignment: 16) { UInt(bitPattern: $0.baseAddress) }
            return (address, layout.base..<layout.top)
        }.wait()
        // Below the top of the stack and within `bytes` of its guard: carved from the stack, or past it.
        let hex = { (value: UInt) in "0x" + String(value, radix: 16) }
        #expect(!(stack.upperBound - UInt(bytes) - UInt(1 << 20)..<stack.upperBound).contains(address),
                "a \(bytes)-byte temporary allocation at \(hex(address)) on the fiber whose stack is \(hex(stack.lowerBound))..<\(hex(stack.upperBound))")
    }
}
