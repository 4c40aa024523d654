import CFiberContext
import CStackSupport
import Glibc
import Logging
@_spi(Benchmarks) import OverflowDetection
import StackAllocators
import Synchronization

/// Why the worker switched into a fiber.
enum ResumeReason: Int {
    /// Run the job just placed in `Fiber.job` (from the entry loop).
    case run
    /// The counter the fiber waited for reached zero, or a yield is over.
    case signalled
    /// Shutdown with `.cancel`: the wait returns `StackError.jobCancelled`.
    case cancelled
}

/// Why a fiber switched back to its worker (passed as the switch's `data`).
enum FiberExit: Int {
    /// The job ended; the fiber is idle at the top of its entry loop.
    case finished = 1
    /// The fiber waits for a counter, which holds it until its wait is claimed.
    case suspended
    /// The fiber yielded; the worker resumes it after the work already queued.
    case yielded
}

/// The raw memory a fiber and its worker share. Saved stack pointers live here and never behind
/// `&property`: an inout access held open across a switch would trip exclusivity checking.
///
/// It holds what the fiber keeps between its runs, and its label follows it in the same allocation
/// (`Fiber.makeControl`); what only the running fiber needs lives in its worker's `FiberSwitches`. A
/// suspended fiber's bookkeeping is two small heap blocks, this and the `Fiber`, a million times over.
/// Nothing on the fiber's side of a switch reads it: a fiber runs on its worker's record alone.
struct FiberControl {
    /// The fiber's saved stack pointer while it is not running; nil until it first runs (a fiber that
    /// never ran has touched no page of its stack).
    var context: UnsafeMutableRawPointer?
    /// The fiber's ThreadSanitizer handle (nil without TSan).
    let sanitizerFiber: UnsafeMutableRawPointer?
    /// Its index in the worker's `FiberRegistry` (changed under the registry's lock only).
    var registrySlot: Int
    /// `Fiber.id`.
    let id: Int
    /// The registration of the stack's guard the fiber made (its allocator had made none), or 0.
    let registration: UInt64
    /// Whether it is suspended in a wait (set and cleared on the worker's thread).
    var isSuspended: Bool
    /// Whether its stack is in `FiberStackRanges` (an allocator outside this package made it).
    let rangeRecorded: Bool
    let grownWhileIdle: Bool
    let prefault: PrefaultStrategy
}

/// A worker's side of the switches into and out of its fibers, in the worker's raw memory, handed to the
/// fiber with each switch in. One fiber runs on a worker at a time, so what the switches, the overflow
/// handler and a job's start and end need of the running one is written here around each switch, not
/// kept by every fiber.
struct FiberSwitches {
    /// The worker's saved stack pointer while one of its fibers runs.
    var returnContext: UnsafeMutableRawPointer? = nil
    /// The worker thread, for switches out of a fiber: its sanitizer handle (TSan) and, once a fiber
    /// entered, its stack's bounds (ASan).
    var returnTarget = fs_switch_target(tsan_fiber: nil, stack_bottom: nil, stack_size: 0)
    /// The fiber being switched into: its sanitizer handle and stack bounds.
    var target = fs_switch_target(tsan_fiber: nil, stack_bottom: nil, stack_size: 0)
    /// What the overflow handler reads while the fiber runs, to blame a fault on it.
    var running = fs_running_stack()
    /// Set by the worker before each switch in.
    var resumeReason = ResumeReason.run
    /// The job the fiber starts on a `.run` resume; taken by the fiber when it starts it.
    var job: Job? = nil
    /// The counter of the job that just ended well, with the job's reference, for the worker to settle.
    var endedCounter: Unmanaged<JobCounter>? = nil
}

/// A context on a stack from a `StackAllocator`, owned by one worker, running one job at a time.
///
/// A fiber runs many jobs in turn without remaking its context: its entry loop runs a job, switches back
/// to the worker, and waits for the next. It resumes only on its worker's thread (the Swift runtime keeps
/// its exclusivity access set per thread). Its frames hold nothing between jobs, so an idle fiber can be
/// freed without being resumed; a suspended one is resumed (signalled or cancelled) before it is freed.
final class Fiber: @unchecked Sendable {
    /// The worker that owns it.
    unowned let worker: Worker
    /// The current wait: its number (shifted left by one) and whether it was claimed (the low bit). See
    /// `claimWait(_:)`.
    private let waitState = Atomic<UInt64>(1)
    private let stack: Stack
    private let control: UnsafeMutablePointer<FiberControl>

    /// Wraps `stack` into a fiber of `worker`. The stack is not touched until the first job.
    init(
        stack: consuming Stack, id: Int, worker: Worker, grownWhileIdle: Bool, prefault: PrefaultStrategy,
        rangeRecorded: Bool
    ) {
        self.worker = worker
        // The single place a fiber's stack gets its label: the overflow handler's copy and the guard
        // registry's (when the allocator registered the stack; its entry goes when the stack is released).
        let (memory, label) = Fiber.makeControl(id: id, worker: worker)
        control = memory.initializeMemory(
            as: FiberControl.self,
            repeating: FiberControl(
                context: nil, sanitizerFiber: fs_sanitizer_create_fiber(),
                registrySlot: 0, id: id,
                registration: Self.labelInRegistry(stack, label, logger: worker.scheduler.logger),
                isSuspended: false, rangeRecorded: rangeRecorded, grownWhileIdle: grownWhileIdle, prefault: prefault),
            count: 1)
        self.stack = stack
        worker.fiberRegistry.add(self)
    }

    deinit {
        if control.pointee.context != nil { checkTopCanary() }
        worker.fiberRegistry.remove(self)
        fs_sanitizer_destroy_fiber(control.pointee.sanitizerFiber)
        let layout = stack.descriptor.layout
        fs_sanitizer_forget_stack(UnsafeRawPointer(bitPattern: layout.usableBottom), layout.sizes.usableSize)
        let registration = control.pointee.registration, rangeRecorded = control.pointee.rangeRecorded
        control.deinitialize(count: 1)
        free(control)
        // Out of the registry and the ranges before `stack` is dropped after this and goes back to its
        // allocator.
        if registration != 0 { GuardRegistry.end(registration, at: layout.usableBottom) }
        if rangeRecorded { FiberStackRanges.remove(layout) }
    }

    /// Labels the stack's guard in the registry, registering it first when its allocator did not (an
    /// allocator of your own that skips `Stack.guarded`), so an overflow on it is still named. Returns the
    /// registration it made, or 0.
    private static func labelInRegistry(
        _ stack: borrowing Stack, _ label: UnsafeBufferPointer<UInt8>, logger: Logger
    ) -> UInt64 {
        let layout = stack.descriptor.layout
        guard !GuardRegistry.setLabel(utf8: label, forStackAt: layout.usableBottom), !layout.guardRange.isEmpty,
            stack.guardMechanism.traps
        else { return 0 }
        do {
            return try GuardRegistry.register(layout, label: String(decoding: label, as: UTF8.self))
        } catch {
            logger.warning(
                "the guard of a fiber's stack could not be registered: an overflow on it will not be named",
                metadata: ["stack": "\(layout)", "error": "\(error)"])
            return 0
        }
    }

    /// What this fiber is, for stats, tests and diagnostics (made on demand: a fiber keeps only its
    /// stack and a few numbers, so a million suspended fibers cost little besides their stack pages).
    var info: FiberInfo {
        FiberInfo(
            id: id, worker: worker.index, node: worker.placement.node, stack: stack.descriptor,
            label: String(cString: label),
            grownWhileIdle: control.pointee.grownWhileIdle, prefault: control.pointee.prefault)
    }

    /// The name an overflow diagnostic uses, NUL-terminated, right after the control block.
    private var label: UnsafePointer<CChar> {
        (UnsafeRawPointer(control) + Self.labelOffset).assumingMemoryBound(to: CChar.self)
    }

    /// Where the label starts in the control block's allocation: right at its end, not at its stride
    /// (bytes need no alignment), which keeps the allocation in a smaller malloc size class.
    private static let labelOffset = MemoryLayout<FiberControl>.size

    /// Memory for a control block (uninitialized) with the fiber's label right after it, and the label:
    /// "fiber 42" and the worker's part (see `Worker.labelSuffix`), in UTF-8, NUL-terminated (the
    /// overflow handler reads it). Written digit by digit straight into it: string interpolation was half
    /// the cost of making a fiber, and every temporary array or string a malloc.
    private static func makeControl(id: Int, worker: Worker) -> (UnsafeMutableRawPointer, UnsafeBufferPointer<UInt8>) {
        let prefix = "fiber ".utf8
        var digits = 1
        var rest = id.magnitude
        while rest >= 10 {
            digits += 1
            rest /= 10
        }
        let count = prefix.count + digits + worker.labelSuffix.count
        // malloc's alignment (16) covers the control block's.
        guard let memory = malloc(labelOffset + count + 1) else { fatalError("out of memory for a fiber's control block") }
        let bytes = (memory + labelOffset).bindMemory(to: UInt8.self, capacity: count + 1)
        var index = 0
        for byte in prefix {
            bytes[index] = byte
            index += 1
        }
        rest = id.magnitude
        for position in (index..<index + digits).reversed() {
            bytes[position] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        }
        index += digits
        for byte in worker.labelSuffix {
            bytes[index] = byte
            index += 1
        }
        bytes[count] = 0
        return (memory, UnsafeBufferPointer(start: bytes, count: count))
    }

    /// Unique within the scheduler, from 1.
    var id: Int { control.pointee.id }

    /// Its index in the worker's registry; read and written under the registry's lock only.
    var registrySlot: Int {
        get { control.pointee.registrySlot }
        set { control.pointee.registrySlot = newValue }
    }

    /// Whether the fiber is suspended in a wait. Worker thread only.
    var isSuspended: Bool {
        get { control.pointee.isSuspended }
        set { control.pointee.isSuspended = newValue }
    }

    /// Fiber side, before it registers with a counter: opens a new wait to be claimed once, and returns it.
    func beginWait() -> FiberWait {
        let number = (waitState.load(ordering: .relaxed) >> 1) &+ 1
        waitState.store(number << 1, ordering: .relaxed)
        return FiberWait(fiber: self, number: number)
    }

    /// Whoever claims a wait first (its worker when the counter reached zero, or a cancelling shutdown)
    /// resumes the fiber; the other leaves it alone. True for the first caller only, and only while
    /// `number` is the fiber's current wait: a wake-up that arrives after the fiber moved on to another
    /// wait claims nothing.
    func claimWait(_ number: UInt64) -> Bool {
        waitState.compareExchange(expected: number << 1, desired: number << 1 | 1, ordering: .acquiringAndReleasing)
            .exchanged
    }

    /// `claimWait` of the current wait, whichever it is (a cancelling shutdown).
    func claimCurrentWait() -> Bool {
        let state = waitState.load(ordering: .relaxed)
        return state & 1 == 0 && claimWait(state >> 1)
    }

    /// Worker side: switches into the fiber through the worker's `switches` and returns when it switches
    /// back, saying why. The first run writes a canary above the fiber's first frame; every later one
    /// checks it first.
    func resume(_ reason: ResumeReason, _ switches: UnsafeMutablePointer<FiberSwitches>) -> FiberExit {
        if control.pointee.context == nil {
            Canary.writeTop(stack.descriptor.layout)
            control.pointee.context = fs_make_context(
                stack.top - Canary.size, stack.usableSize - Canary.size, fiberEntry)
        } else {
            checkTopCanary()
        }
        switches.pointee.resumeReason = reason
        // From the layout, whose accessors inline: `Stack`'s own are calls into another module.
        let layout = stack.descriptor.layout
        switches.pointee.target = fs_switch_target(
            tsan_fiber: control.pointee.sanitizerFiber, stack_bottom: UnsafeRawPointer(bitPattern: layout.usableBottom),
            stack_size: layout.sizes.usableSize)
        switches.pointee.running = fs_running_stack(
            guard_low: layout.guardRange.lowerBound, usable_bottom: layout.usableBottom, top: layout.top, label: label)
        fs_overflow_set_running_stack(switches.pointer(to: \.running))
        let transfer = fs_switch_context(
            control.pointee.context, UnsafeMutableRawPointer(switches), switches.pointer(to: \.target))
        fs_overflow_set_running_stack(nil)
        control.pointee.context = transfer.from
        return FiberExit(rawValue: Int(bitPattern: transfer.data))!
    }

    /// Ends the process when the canary at the top of this fiber's stack was overwritten while the
    /// fiber was not running: another fiber's frame jumped past its own guard into this stack, and
    /// resuming or reusing it would run on corrupted frames.
    private func checkTopCanary() {
        let layout = stack.descriptor.layout
        guard !Canary.isTopIntact(layout) else { return }
        let line = "fiberstacks: the top of the stack of \(info.label) [0x\(String(layout.usableBottom, radix: 16)), "
            + "0x\(String(layout.top, radix: 16))) was overwritten while the fiber was not running: a frame of "
            + "another fiber jumped past its guard into this stack; make the guard at least the largest frame "
            + "(`fiberstacks frames` lists them)\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        abort()
    }

    /// Fiber side: switches back to the worker whose `switches` these are and returns when the worker
    /// resumes the fiber.
    static func switchOut(_ switches: UnsafeMutablePointer<FiberSwitches>, _ exit: FiberExit) -> ResumeReason {
        let transfer = fs_switch_context(
            switches.pointee.returnContext, UnsafeMutableRawPointer(bitPattern: exit.rawValue),
            switches.pointer(to: \.returnTarget))
        switches.pointee.returnContext = transfer.from
        return switches.pointee.resumeReason
    }

    /// Runs the job the worker handed in. Out of line, so every reference it takes is released before
    /// the entry loop switches away.
    @inline(never)
    static func runJob(_ switches: UnsafeMutablePointer<FiberSwitches>) {
        switches.pointee.endedCounter = switches.pointee.job.take()?.run()
    }
}

/// One wait of a fiber, as a counter keeps it until it wakes its waiters.
struct FiberWait {
    let fiber: Fiber
    /// Which of the fiber's waits (`Fiber.claimWait(_:)`).
    let number: UInt64
}

/// Every fiber starts here, on its own stack, with its worker's `FiberSwitches` in `data`. It never
/// returns: it runs a job, switches back to the worker, and waits for the next job, holding only raw
/// pointers.
private let fiberEntry: fs_entry = { transfer in
    let switches = transfer.data!.assumingMemoryBound(to: FiberSwitches.self)
    fs_fiber_entered(&switches.pointee.returnTarget.stack_bottom, &switches.pointee.returnTarget.stack_size)
    switches.pointee.returnContext = transfer.from
    while true {
        Fiber.runJob(switches)
        _ = Fiber.switchOut(switches, .finished)
    }
}
