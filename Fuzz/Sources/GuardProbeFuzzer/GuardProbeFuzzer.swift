// Fuzz target: real guard pages, really hit. Each input is one case — allocator (mmap, slab, pool),
// guard mode, stack and guard sizes, frame size and recursion depth, label — run in a forked child:
// the child installs the overflow handler, takes a guarded stack from the allocator, maps a sentinel
// (pages of a known pattern, shared with the fuzzer) directly below the guard, and recurses on a thread
// whose stack is the usable range. Frames keep to the documented contract (smaller than the guard). Checked:
// - the child either completes (exit 0) or dies by SIGSEGV after writing our diagnostic, naming the
//   stored label, with a fault address inside the guard and the stack's sizes; a SIGSEGV without the
//   diagnostic, any other signal or exit status, or a hang is a finding;
// - a recursion that surely fits completes; one whose frames alone exceed the stack does not;
// - the sentinel below the guard is intact afterwards: nothing wrote past the guard.
// Frames larger than the guard can step over it (Swift emits no stack probes): the documented
// limitation, confirmed once at start-up and reported on stderr, never a finding.
@_spi(Benchmarks) import OverflowDetection
import CFuzzSupport
import FuzzSupport
import Glibc
import StackAllocators

/// The largest guard a case asks for, and the size of the sentinel below it.
let maximumGuard = 64 << 10
let sentinel = Sentinel(size: maximumGuard * 2)
/// How long a child may run.
let childTimeoutMilliseconds: Int32 = 20_000

@_cdecl("LLVMFuzzerInitialize")
public func guardProbeFuzzerInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    confirmOversizeFrameLimitation()
    atexit { Tally.shared.report() }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func guardProbeFuzzer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = ByteReader(data, size)
    let probe = decodeCase(&input)
    let outcome = run(probe)
    outcome.check(probe)
    Tally.shared.count(outcome)
    return 0
}

/// A case whose frames keep to the contract: smaller than the guard by at least the call's overhead.
func decodeCase(_ input: inout ByteReader) -> ProbeCase {
    let page = systemPageSize
    let allocator = input.pick(ProbeAllocator.allCases)
    let guardMode: GuardMode = input.bool() ? .automatic : .protNone
    let guardSize = input.int(in: 1...(maximumGuard / page)) * page
    let usable = input.int(in: 16...1024) * page
    let frameBytes = input.int(in: 0...(guardSize - ProbeCase.frameOverhead - 1))
    let capacity = usable / (frameBytes + ProbeCase.frameOverhead)
    let depth: Int
    switch input.byte() % 3 {
    case 0: depth = input.int(in: 0...max(capacity / 2, 1))  // mostly fits
    case 1: depth = usable / max(frameBytes, 1) + input.int(in: 1...1000)  // cannot fit
    default: depth = input.int(in: 0...(capacity * 2))  // anything between
    }
    return ProbeCase(allocator: allocator, guardMode: guardMode, usable: usable, guardSize: guardSize, frameBytes: frameBytes, depth: depth, label: input.label(maximumLength: 80))
}

/// What became of one child.
struct Outcome {
    let result: fz_child_result
    let output: String
    let sentinelDamage: (count: Int, first: [Int])

    var inconclusive: Bool { exited && exitStatus == ChildExit.noRoomForSentinel.rawValue }
    var exited: Bool { result.error == 0 && !timedOut && result.status & 0x7F == 0 }
    var exitStatus: Int32 { (result.status >> 8) & 0xFF }
    var signalled: Bool { result.error == 0 && !timedOut && result.status & 0x7F != 0 && result.status & 0x7F != 0x7F }
    var signal: Int32 { result.status & 0x7F }
    var timedOut: Bool { result.timed_out != 0 }

    var summary: String {
        let how =
            result.error != 0 ? "could not be run (errno \(result.error))"
            : timedOut ? "hung (killed after \(childTimeoutMilliseconds) ms)"
            : exited ? "exited with \(exitStatus)" : "was killed by signal \(signal)"
        return "the child \(how); sentinel bytes overwritten: \(sentinelDamage.count) (first at offsets \(sentinelDamage.first)); stderr: \(output.debugDescription)"
    }

    /// The invariants of a case that keeps to the contract.
    func check(_ probe: ProbeCase) {
        guard !inconclusive else { return }
        let context = { "\(probe): \(summary)" }
        FuzzSupport.check(sentinelDamage.count == 0, "memory below the guard was written: \(context())")
        if exited && exitStatus == 0 {
            FuzzSupport.check(!probe.cannotFit, "the recursion completed although it cannot fit: \(context())")
            return
        }
        FuzzSupport.check(signalled && signal == SIGSEGV, "neither completed nor died by SIGSEGV: \(context())")
        FuzzSupport.check(!probe.surelyFits, "a recursion that fits overflowed: \(context())")
        checkDiagnostic(probe, context)
    }

    /// The diagnostic names the label and the stack, and the fault lies in the guard.
    func checkDiagnostic(_ probe: ProbeCase, _ context: () -> String) {
        let stored = storedLabel(probe.label, capacity: GuardRegistry.labelCapacity)
        let who = stored.isEmpty ? "an unlabelled fiber" : "fiber \"\(stored)\""
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("fiberstacks: stack overflow in ") }) else {
            finding("SIGSEGV without the overflow diagnostic: \(context())")
        }
        FuzzSupport.check(line.hasPrefix("fiberstacks: stack overflow in \(who) ("), "the diagnostic does not name \(who): \(context())")
        FuzzSupport.check(
            line.contains("; usable \(probe.usable) B, guard \(probe.guardSize) B;"), "the diagnostic gives other sizes: \(context())")
        guard let below = line.firstRange(of: " bytes below the usable bottom"),
            let distance = Int(line[..<below.lowerBound].split(separator: " ").last ?? "")
        else { finding("the diagnostic gives no distance: \(context())") }
        FuzzSupport.check(distance >= 1 && distance <= probe.guardSize, "the fault is \(distance) bytes below the usable bottom, outside the guard: \(context())")
        // The distance must be the one between the two addresses the line itself gives.
        guard let fault = hexadecimal(after: "fault at 0x", in: line), let bottom = hexadecimal(after: "of stack [0x", in: line) else {
            finding("the diagnostic gives no fault address or no usable bottom: \(context())")
        }
        FuzzSupport.check(
            bottom > fault && bottom - fault == UInt(distance),
            "the diagnostic says \(distance) bytes below the usable bottom, but the fault at 0x\(String(fault, radix: 16)) is \(Int(bitPattern: bottom &- fault)) bytes below 0x\(String(bottom, radix: 16)): \(context())")
    }
}

/// The hexadecimal number right after `prefix` in `line`.
func hexadecimal(after prefix: String, in line: Substring) -> UInt? {
    guard let start = line.firstRange(of: prefix)?.upperBound else { return nil }
    return UInt(line[start...].prefix { $0.isHexDigit }, radix: 16)
}

/// Runs `probe` in a child and collects what happened.
func run(_ probe: ProbeCase) -> Outcome {
    sentinel.reset()
    let job = UnsafeMutablePointer<ProbeCase>.allocate(capacity: 1)
    job.initialize(to: probe)
    defer { job.deinitialize(count: 1); job.deallocate() }
    let capacity = 8192
    let output = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
    defer { output.deallocate() }
    let result = fz_run_child({ raw in
        runChild(raw!.assumingMemoryBound(to: ProbeCase.self).pointee, sentinel: sentinel)
    }, job, childTimeoutMilliseconds, output, capacity)
    let text = String(decoding: UnsafeRawBufferPointer(start: output, count: result.output_length), as: UTF8.self)
    return Outcome(result: result, output: text, sentinelDamage: sentinel.damage())
}

/// Runs cases outside the contract — frames eight times the guard, each a little larger — and reports
/// how often they wrote below the guard before anything faulted: the documented limitation.
func confirmOversizeFrameLimitation() {
    let page = systemPageSize
    var jumped = 0
    var conclusive = 0
    for attempt in 0..<8 {
        let probe = ProbeCase(
            allocator: .mmap, guardMode: .automatic, usable: 64 * page, guardSize: page, frameBytes: 8 * page + attempt * 512, depth: 1000,
            label: "oversize")
        let outcome = run(probe)
        guard !outcome.inconclusive else { continue }
        conclusive += 1
        if outcome.sentinelDamage.count > 0 { jumped += 1 }
    }
    var line = "GuardProbeFuzzer: documented limitation: frames of about \(8 * page) B over a \(page) B guard wrote below "
        + "the guard in \(jumped) of \(conclusive) runs (Swift emits no stack probes; keep frames smaller than the guard)\n"
    line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// How the cases ended, reported when the fuzzer exits.
final class Tally: @unchecked Sendable {
    /// The fuzzer's one tally (libFuzzer runs inputs on one thread).
    static let shared = Tally()
    private var completed = 0
    private var overflowed = 0
    private var inconclusive = 0

    func count(_ outcome: Outcome) {
        if outcome.inconclusive {
            inconclusive += 1
        } else if outcome.exited {
            completed += 1
        } else {
            overflowed += 1
        }
    }

    func report() {
        var line = "GuardProbeFuzzer: \(completed) cases completed, \(overflowed) overflowed into the guard with the diagnostic, "
            + "\(inconclusive) inconclusive (no room for the sentinel below the guard)\n"
        line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
