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
struct FiberControl {
    /// The fiber's saved stack pointer while it is not running; nil until it first runs (a fiber that
    /// never ran has touched no page of its stack).
    var context: UnsafeMutableRawPointer?
    /// The worker's saved stack pointer while the fiber runs.
    var returnContext: UnsafeMutableRawPointer?
    /// The fiber, for switches into it (sanitizer handles, stack bounds).
    var target: fs_switch_target
    /// The worker thread, for switches out of the fiber.
    var returnTarget: fs_switch_target
    /// Set by the worker before each switch in.
    var resumeReason: ResumeReason
    /// The job to run on the next `.run` resume; taken by the fiber when it starts it.
    var job: Job?
    /// The counter of the job that just ended well, with the job's reference, for the worker to settle.
    var endedCounter: Unmanaged<JobCounter>?
    /// Whether it is suspended in a wait (set and cleared on the worker's thread).
    var isSuspended: Bool
    /// Its index in the worker's `FiberRegistry` (changed under the registry's lock only).
    var registrySlot: Int
}

/// A context on a stack from a `StackAllocator`, owned by one worker, running one job at a time.
///
/// A fiber runs many jobs in turn without remaking its context: its entry loop runs a job, switches back
/// to the worker, and waits for the next. It resumes only on its worker's thread (the Swift runtime keeps
/// its exclusivity access set per thread). Its frames hold nothing between jobs, so an idle fiber can be
/// freed without being resumed; a suspended one is resumed (signalled or cancelled) before it is freed.
final class Fiber: @unchecked Sendable {
    /// Unique within the scheduler, from 1.
    let id: Int
    /// The worker that owns it.
    unowned let worker: Worker
    private let grownWhileIdle: Bool
    private let prefault: PrefaultStrategy
    /// The current wait: its number (shifted left by one) and whether it was claimed (the low bit). See
    /// `claimWait(_:)`.
    private let waitState = Atomic<UInt64>(1)
    private let stack: Stack
    /// The registration of the stack's guard this fiber made (its allocator had made none).
    private let registration: UInt64?
    private let control: UnsafeMutablePointer<FiberControl>
    /// What the overflow handler reads while this fiber runs, to blame a fault on it.
    private let running: UnsafeMutablePointer<fs_running_stack>

    /// Wraps `stack` into a fiber of `worker`. The stack is not touched until the first job.
    init(stack: consuming Stack, id: Int, worker: Worker, grownWhileIdle: Bool, prefault: PrefaultStrategy) {
        self.id = id
        self.worker = worker
        self.grownWhileIdle = grownWhileIdle
        self.prefault = prefault
        // The single place a fiber's stack gets its label: the overflow handler's copy and the guard
        // registry's (when the allocator registered the stack; its entry goes when the stack is released).
        let label = Fiber.makeLabel(id: id, worker: worker)
        control = .allocate(capacity: 1)
        control.initialize(
            to: FiberControl(
                context: nil, returnContext: nil,
                target: fs_switch_target(
                    tsan_fiber: fs_sanitizer_create_fiber(), stack_bottom: UnsafeRawPointer(stack.usableBottom),
                    stack_size: stack.usableSize),
                returnTarget: fs_switch_target(tsan_fiber: worker.sanitizerFiber, stack_bottom: nil, stack_size: 0),
                resumeReason: .run, job: nil, endedCounter: nil, isSuspended: false, registrySlot: 0))
        let layout = stack.descriptor.layout
        running = .allocate(capacity: 1)
        running.initialize(
            to: fs_running_stack(
                guard_low: layout.guardRange.lowerBound, usable_bottom: layout.usableBottom, top: layout.top,
                label: UnsafeRawPointer(label.baseAddress!).assumingMemoryBound(to: CChar.self)))
        registration = Self.labelInRegistry(stack, label, logger: worker.scheduler.logger)
        self.stack = stack
        worker.fiberRegistry.add(self)
    }

    deinit {
        if control.pointee.context != nil { checkTopCanary() }
        worker.fiberRegistry.remove(self)
        free(UnsafeMutablePointer(mutating: running.pointee.label))
        running.deinitialize(count: 1)
        running.deallocate()
        fs_sanitizer_destroy_fiber(control.pointee.target.tsan_fiber)
        control.deinitialize(count: 1)
        control.deallocate()
        // Out of the registry before `stack` is dropped after this and goes back to its allocator.
        if let registration { GuardRegistry.end(registration, at: stack.descriptor.layout.usableBottom) }
    }

    /// Labels the stack's guard in the registry, registering it first when its allocator did not (an
    /// allocator of your own that skips `Stack.guarded`), so an overflow on it is still named. Returns the
    /// registration it made, if it made one.
    private static func labelInRegistry(
        _ stack: borrowing Stack, _ label: UnsafeBufferPointer<UInt8>, logger: Logger
    ) -> UInt64? {
        let layout = stack.descriptor.layout
        guard !GuardRegistry.setLabel(utf8: label, forStackAt: layout.usableBottom), !layout.guardRange.isEmpty,
            stack.guardMechanism == .lightweight || stack.guardMechanism == .protNone
        else { return nil }
        do {
            return try GuardRegistry.register(layout, label: String(decoding: label, as: UTF8.self))
        } catch {
            logger.warning(
                "the guard of a fiber's stack could not be registered: an overflow on it will not be named",
                metadata: ["stack": "\(layout)", "error": "\(error)"])
            return nil
        }
    }

    /// What this fiber is, for stats, tests and diagnostics (made on demand: a fiber keeps only its
    /// stack and a few numbers, so a million suspended fibers cost little besides their stack pages).
    var info: FiberInfo {
        FiberInfo(
            id: id, worker: worker.index, node: worker.placement.node, stack: stack.descriptor,
            label: String(cString: running.pointee.label),
            grownWhileIdle: grownWhileIdle, prefault: prefault)
    }

    /// The name an overflow diagnostic uses, in UTF-8: "fiber 42" and the worker's part (see
    /// `Worker.labelSuffix`), NUL-terminated in memory of its own that the fiber frees (the overflow
    /// handler reads it). Written digit by digit straight into it: string interpolation was half the cost
    /// of making a fiber, and every temporary array or string a malloc.
    private static func makeLabel(id: Int, worker: Worker) -> UnsafeBufferPointer<UInt8> {
        let prefix = "fiber ".utf8
        var digits = 1
        var rest = id.magnitude
        while rest >= 10 {
            digits += 1
            rest /= 10
        }
        let count = prefix.count + digits + worker.labelSuffix.count
        guard let memory = malloc(count + 1) else { fatalError("out of memory for a fiber's label") }
        let bytes = memory.bindMemory(to: UInt8.self, capacity: count + 1)
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
        return UnsafeBufferPointer(start: bytes, count: count)
    }

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

    /// Worker side: hands the fiber its next job (run on the next `.run` resume).
    func assign(_ job: Job) {
        control.pointee.job = job
    }

    /// Worker side, after a `.finished` exit: the counter of the job that ended well, if it did.
    func takeEndedCounter() -> Unmanaged<JobCounter>? {
        control.pointee.endedCounter.take()
    }

    /// Worker side: switches into the fiber and returns when it switches back, saying why.
    /// The first run writes a canary above the fiber's first frame; every later one checks it first.
    func resume(_ reason: ResumeReason) -> FiberExit {
        if control.pointee.context == nil {
            Canary.writeTop(stack.descriptor.layout)
            control.pointee.context = fs_make_context(
                stack.top - Canary.size, stack.usableSize - Canary.size, fiberEntry)
        } else {
            checkTopCanary()
        }
        control.pointee.resumeReason = reason
        fs_overflow_set_running_stack(running)
        let transfer = fs_switch_context(
            control.pointee.context, UnsafeMutableRawPointer(control), control.pointer(to: \.target))
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

    /// Fiber side: switches back to the worker and returns when the worker resumes this fiber.
    func switchOut(_ exit: FiberExit) -> ResumeReason {
        Fiber.switchOut(control, exit)
    }

    static func switchOut(_ control: UnsafeMutablePointer<FiberControl>, _ exit: FiberExit) -> ResumeReason {
        let transfer = fs_switch_context(
            control.pointee.returnContext, UnsafeMutableRawPointer(bitPattern: exit.rawValue),
            control.pointer(to: \.returnTarget))
        control.pointee.returnContext = transfer.from
        return control.pointee.resumeReason
    }

    /// Runs the job waiting in the fiber. Out of line, so every reference it takes is released before
    /// the entry loop switches away.
    @inline(never)
    static func runJob(_ control: UnsafeMutablePointer<FiberControl>) {
        control.pointee.endedCounter = control.pointee.job.take()?.run()
    }
}

/// One wait of a fiber, as a counter keeps it until it wakes its waiters.
struct FiberWait {
    let fiber: Fiber
    /// Which of the fiber's waits (`Fiber.claimWait(_:)`).
    let number: UInt64
}

/// Every fiber starts here, on its own stack, with its control block in `data`. It never returns: it
/// runs a job, switches back to the worker, and waits for the next job, holding only raw pointers.
private let fiberEntry: fs_entry = { transfer in
    let control = transfer.data!.assumingMemoryBound(to: FiberControl.self)
    fs_fiber_entered(&control.pointee.returnTarget.stack_bottom, &control.pointee.returnTarget.stack_size)
    control.pointee.returnContext = transfer.from
    while true {
        Fiber.runJob(control)
        _ = Fiber.switchOut(control, .finished)
    }
}
