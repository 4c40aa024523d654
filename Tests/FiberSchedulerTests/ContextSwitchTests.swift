import CFiberContext
import FiberScheduler
import Glibc
import Synchronization
import Testing

/// What the fiber and the test thread tell each other in the raw switch test.
private struct Exchange {
    var divisor: Double = 10
    var fiberQuotient: Double = 0
    var fiberRoundingBefore: Int32 = -1
    var fiberRoundingAfter: Int32 = -1
    var fiberHeldIntact = false
    var fiberQuotientAfter: Double = 0
}

/// Computed in a non-inlined function so the compiler cannot fold it at compile time.
@inline(never)
private func divide(_ numerator: Double, _ divisor: Double) -> Double { numerator / divisor }

@inline(never)
private func mix(_ seed: Int) -> Int { seed &* 0x1E37_79B9_7F4A_7C15 ^ (seed >> 7) }

/// Runs on a fresh stack: sets round-toward-zero, switches back with values live, checks them on return.
private let roundingFiber: fs_entry = { transfer in
    let exchange = transfer.data!.assumingMemoryBound(to: Exchange.self)
    exchange.pointee.fiberRoundingBefore = fegetround()
    fesetround(FE_TOWARDZERO)
    let divisor = exchange.pointee.divisor
    exchange.pointee.fiberQuotient = divide(1, divisor)
    // Values live across the switch: the compiler keeps some in callee-saved registers, spills the rest.
    let (i1, i2, i3, i4, i5, i6) = (mix(1), mix(2), mix(3), mix(4), mix(5), mix(6))
    let (d1, d2, d3, d4) = (divide(1, divisor), divide(5, divisor), divide(7, divisor), divide(11, divisor))
    let back = fs_jump_context(transfer.from, nil)
    exchange.pointee.fiberRoundingAfter = fegetround()
    exchange.pointee.fiberQuotientAfter = divide(1, divisor)
    exchange.pointee.fiberHeldIntact =
        (i1, i2, i3, i4, i5, i6) == (mix(1), mix(2), mix(3), mix(4), mix(5), mix(6))
        && (d1, d2, d3, d4) == (divide(1, divisor), divide(5, divisor), divide(7, divisor), divide(11, divisor))
    _ = fs_jump_context(back.from, nil)
    abort()  // never resumed again
}

#if arch(x86_64)
/// MXCSR and the x87 control word are part of each context on x86_64; AArch64 keeps FPCR thread-global
/// (docs/context-switch.md), so the rounding mode is not per fiber there.
private let roundingIsPerContext = true
#else
private let roundingIsPerContext = false
#endif

@Suite("The context switch, seen from Swift")
struct ContextSwitchTests {
    @Test(
        "Rounding mode is per context and values held across switches are intact, both ways",
        .enabled(if: roundingIsPerContext, "the FP control state is per context only on x86_64 (AArch64 FPCR is thread-global)"))
    func floatingPointStateAndHeldValues() throws {
        let allocator = try MmapStackAllocator()
        let stack = try allocator.allocate(StackRequest(usableSize: 64 << 10))
        let exchange = UnsafeMutablePointer<Exchange>.allocate(capacity: 1)
        exchange.initialize(to: Exchange())
        defer { exchange.deallocate() }

        #expect(fesetround(FE_TONEAREST) == 0)
        let (i1, i2, i3) = (mix(11), mix(12), mix(13))
        let d1 = divide(1, 7)
        let context = fs_make_context(stack.top, stack.usableSize, roundingFiber)
        let first = fs_jump_context(context, exchange)
        // Back on the test thread: its rounding is untouched by the fiber's fesetround.
        #expect(fegetround() == FE_TONEAREST)
        #expect(exchange.pointee.fiberRoundingBefore == FE_TONEAREST, "a new context inherits its creator's mode")
        let nearest = divide(1, exchange.pointee.divisor)
        #expect(nearest != exchange.pointee.fiberQuotient, "1/10 rounds up to nearest, down toward zero")
        #expect(exchange.pointee.fiberQuotient < nearest)
        _ = fs_jump_context(first.from, exchange)
        // The fiber saw its own mode again after the round trip, and its held values intact.
        #expect(exchange.pointee.fiberRoundingAfter == FE_TOWARDZERO)
        #expect(exchange.pointee.fiberQuotientAfter == exchange.pointee.fiberQuotient)
        #expect(exchange.pointee.fiberHeldIntact)
        #expect(fegetround() == FE_TONEAREST)
        #expect((i1, i2, i3) == (mix(11), mix(12), mix(13)))
        #expect(d1 == divide(1, 7))
        stack.release()
    }

    @Test(
        "A job that changes the rounding mode and suspends does not change it for its worker's other jobs",
        .enabled(if: roundingIsPerContext, "the FP control state is per context only on x86_64 (AArch64 FPCR is thread-global)"))
    func roundingModeIsPerFiberInTheScheduler() throws {
        let scheduler = try FiberScheduler(config: testConfig(workers: 1))
        defer { scheduler.shutdown() }
        let gate = JobCounter(1)
        let nearest = divide(1, 10)
        let changer = scheduler.submit { () throws -> (Int32, Double) in
            fesetround(FE_DOWNWARD)
            try gate.wait()  // suspends; the worker runs the observer meanwhile
            let seen = (fegetround(), divide(1, 10))
            fesetround(FE_TONEAREST)  // a job restores what it changes: the fiber is reused
            return seen
        }
        #expect(eventually { scheduler.stats.workers[0].suspensions == 1 })
        let observer = scheduler.submit { () -> (Int32, Double) in
            defer { gate.decrement() }
            return (fegetround(), divide(1, 10))
        }
        // x87 control word (fegetround) and MXCSR (the SSE division) both belong to each fiber.
        let (observedMode, observedQuotient) = try observer.wait()
        #expect(observedMode == FE_TONEAREST)
        #expect(observedQuotient == nearest)
        let (changedMode, changedQuotient) = try changer.wait()
        #expect(changedMode == FE_DOWNWARD)
        #expect(changedQuotient < nearest)
    }
}
