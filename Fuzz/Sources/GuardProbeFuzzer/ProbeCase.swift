import CFuzzSupport
import Glibc
import StackAllocators

/// Where a case's stack comes from.
enum ProbeAllocator: CaseIterable {
    /// `MmapStackAllocator`.
    case mmap
    /// `SlabStackAllocator` with one stack per region (so that the pages below its guard are free).
    case slab
    /// `PooledStackAllocator` over `MmapStackAllocator`.
    case pool

    /// The allocator for stacks of `usable` bytes over `guardSize`-byte guards of `mode`.
    func make(usable: Int, guardSize: Int, mode: GuardMode) throws(StackError) -> any StackAllocator {
        switch self {
        case .mmap:
            return try MmapStackAllocator(guardMode: mode)
        case .slab:
            return try SlabStackAllocator(.init(usableSize: usable, guardSize: guardSize, stacksPerRegion: 1, guardMode: mode))
        case .pool:
            return try PooledStackAllocator(
                wrapping: try MmapStackAllocator(guardMode: mode), .init(stack: StackRequest(usableSize: usable, guardSize: guardSize)))
        }
    }
}

/// One guarded stack and one recursion on it: what a child process runs.
struct ProbeCase: CustomStringConvertible {
    /// Where the stack comes from.
    var allocator: ProbeAllocator
    /// Which guard the allocator installs.
    var guardMode: GuardMode
    /// Requested usable bytes (a multiple of the page size).
    var usable: Int
    /// Requested guard bytes (a multiple of the page size, at least one page).
    var guardSize: Int
    /// Bytes of each frame's local array.
    var frameBytes: Int
    /// Levels of recursion.
    var depth: Int
    /// The label the stack gets in the guard registry.
    var label: String

    /// What one level costs at most beyond its array: return address, saved registers, alignment.
    static let frameOverhead = 128
    /// Room for what sits at the top of the thread's stack besides the recursion: glibc's thread
    /// control block and static TLS, the thread's entry frames, the alternate-signal-stack setup.
    static let topReserve = 96 << 10

    /// Whether the frames keep to the documented contract: each smaller than the guard, with room for
    /// the call's own words, so every frame's first write that crosses the usable bottom lands in the guard.
    var framesFitGuard: Bool { frameBytes + Self.frameOverhead < guardSize }
    /// The recursion surely fits the usable range: it must complete.
    var surelyFits: Bool { depth * (frameBytes + Self.frameOverhead) + Self.topReserve < usable }
    /// The recursion cannot fit: its arrays alone are larger than the usable range. It must overflow.
    var cannotFit: Bool { depth * frameBytes > usable }

    var description: String {
        "\(allocator) allocator, \(guardMode) guard \(guardSize) B, usable \(usable) B, \(depth) frames of \(frameBytes) B, label \(label.debugDescription)"
    }
}

/// The parameters of the thread that recurses, passed through C as a raw pointer.
struct RecursionJob {
    var depth: Int
    var frameBytes: Int
}

/// Exit statuses of the child, besides 0 (the recursion completed).
enum ChildExit: Int32 {
    /// Setting up failed (the handler, the allocator, the thread); stderr says what.
    case setupFailed = 2
    /// No room for the sentinel directly below the guard: inconclusive, not a finding.
    case noRoomForSentinel = 3
    /// The allocator did not register the stack's guard (setOverflowLabel found nothing).
    case notRegistered = 4
}

/// Writes `message` to stderr with write(2) (the child avoids stdio) and ends the child with `status`.
func exitChild(_ status: ChildExit, _ message: String) -> Never {
    var line = "GuardProbeFuzzer child: " + message + "\n"
    line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    _exit(status.rawValue)
}

/// The child: a fresh handler chaining to the default action (so a fault outside a guard kills
/// silently, as in a process without a crash reporter), a stack from the case's allocator with the shared
/// sentinel mapped directly below its guard, and the recursion on a thread whose stack it is.
func runChild(_ probe: ProbeCase, sentinel: Sentinel) -> Int32 {
    signal(SIGSEGV, SIG_DFL)
    signal(SIGBUS, SIG_DFL)
    do throws(StackError) {
        try OverflowHandler.install()
        let allocator = try probe.allocator.make(usable: probe.usable, guardSize: probe.guardSize, mode: probe.guardMode)
        // Stacks whose pages below were taken are kept, so that the next one lands elsewhere.
        let held = UnsafeMutablePointer<Stack>.allocate(capacity: 4)
        var stack = try allocator.allocate(StackRequest(usableSize: probe.usable, guardSize: probe.guardSize))
        for attempt in 0..<4 {
            if sentinel.mapBelow(stack.descriptor.layout.base) { break }
            if attempt == 3 { exitChild(.noRoomForSentinel, "the pages below four stacks in a row were taken") }
            (held + attempt).initialize(to: stack)
            stack = try allocator.allocate(StackRequest(usableSize: probe.usable, guardSize: probe.guardSize))
        }
        guard stack.setOverflowLabel(probe.label) else { exitChild(.notRegistered, "\(stack.descriptor) is not in GuardRegistry") }
        var job = RecursionJob(depth: probe.depth, frameBytes: probe.frameBytes)
        let code = fz_run_on_stack(UnsafeMutableRawPointer(bitPattern: stack.descriptor.layout.usableBottom), stack.descriptor.layout.sizes.usableSize, { raw in
            let job = raw!.assumingMemoryBound(to: RecursionJob.self).pointee
            do throws(StackError) {
                try AlternateSignalStack.installForCurrentThread()
            } catch {
                exitChild(.setupFailed, "alternate signal stack: \(error)")
            }
            _ = fz_recurse(job.depth, job.frameBytes)
        }, &job)
        if code != 0 { exitChild(.setupFailed, "thread on the stack: errno \(code)") }
        withExtendedLifetime(allocator) {}
        _ = consume stack
    } catch {
        exitChild(.setupFailed, "\(error)")
    }
    return 0
}
