import CFiberContext
import CPeers
import CStackSupport
import FiberScheduler
@_spi(Benchmarks) import OverflowDetection
import StackAllocators

/// `context_switch`: ns per switch (a round trip is two).
///
/// - `jump_raw`: `fs_jump_context` ping-pong between this thread and a fiber on a 64 KiB guarded stack,
///   called from Swift, alternating within each repetition with Boost's `jump_fcontext` and glibc's
///   `swapcontext` (peers) on 64 KiB stacks.
/// - `switch_scheduler_path`: the same through `fs_switch_context`, the sanitizer-aware wrapper the
///   scheduler calls (a tail call when no sanitizer is built in).
/// - `switch_checked`: `switch_scheduler_path` plus what a fiber's resume adds to catch jumped guards:
///   the check of the canary at the top of the stack and the running-stack slot the overflow handler reads.
/// - `scheduler_yield`: `FiberScheduler.yield()` in a job on one worker: two switches and one pass of the
///   worker loop per yield.
enum ContextSwitchBenchmarks {
    static func run(_ recorder: BenchRecorder) throws {
        let scale = recorder.scale
        if fs_sanitizer_thread_enabled() || fs_sanitizer_address_enabled() {
            for name in ["jump_raw", "switch_scheduler_path", "switch_checked"] {
                recorder.skip(.contextSwitch, name, because: "built with a sanitizer: the raw switch is not announced to it, and its timings would measure the sanitizer")
            }
        } else {
            let roundTrips = scale.ops(1_000_000, quick: 1_000)
            let size = 64 << 10
            let stack = try MmapStackAllocator(logger: benchLogger).allocate(StackRequest(usableSize: size))
            let fcontext = try peerObject("boost_jump_fcontext") { fs_peer_fcontext_create(size) }
            let ucontext = try peerObject("ucontext_swapcontext") { fs_peer_ucontext_create(size) }
            defer {
                fs_peer_fcontext_destroy(fcontext)
                fs_peer_ucontext_destroy(ucontext)
            }
            let switches = Double(2 * roundTrips)
            let unguarded = ["guard_size: 4096 vs \(StackRequest.defaultGuardSize)", "guard_kind: mprotect"]
            try recorder.contest(.contextSwitch, opsPerRep: 2 * roundTrips, [SwitchPath.jump_raw, .switch_scheduler_path, .switch_checked].map { path in
                .ours("\(path)", ["stack": size]) { Double(pingPong(on: stack, roundTrips: roundTrips, path: path)) / switches }
            } + [
                .peer("boost_jump_fcontext", ["stack": size], unmatched: unguarded) {
                    try peerNanoseconds("boost_jump_fcontext") { fs_peer_fcontext(fcontext, roundTrips) } / switches
                },
                .peer("ucontext_swapcontext", ["stack": size], unmatched: ["guard_size: 0 vs \(StackRequest.defaultGuardSize)"]) {
                    try peerNanoseconds("ucontext_swapcontext") { fs_peer_ucontext(ucontext, roundTrips) } / switches
                },
            ])
        }
        let yields = scale.ops(200_000, quick: 200)
        var config = FiberConfig()
        config.workerCount = 1
        config.initialPoolSize = 1
        config.targetPoolSize = 1
        let scheduler = try FiberScheduler(config: config)
        defer { scheduler.shutdown() }
        let samples = try measure(scale, ops: 2 * yields) {
            try scheduler.submit { () -> UInt64 in
                let start = nanoseconds()
                for _ in 0..<yields { FiberScheduler.yield() }
                return nanoseconds() - start
            }.wait()
        }
        recorder.add(BenchResult(
            section: .contextSwitch, name: "scheduler_yield", params: ["workers": 1], samples: samples,
            opsPerRep: 2 * yields))
    }

    /// What one switch into the partner goes through.
    enum SwitchPath {
        case jump_raw, switch_scheduler_path, switch_checked
    }

    /// Nanoseconds for `roundTrips` round trips between this thread and a new fiber on `stack`, which is
    /// left suspended inside `partner` (it holds nothing, so its stack can be reused or released).
    static func pingPong(on stack: borrowing Stack, roundTrips: Int, path: SwitchPath) -> UInt64 {
        let layout = stack.descriptor.layout
        Canary.writeTop(layout)
        var transfer = fs_jump_context(
            fs_make_context(stack.top - Canary.size, layout.sizes.usableSize - Canary.size, partner), nil)
        var target = fs_switch_target(
            tsan_fiber: nil, stack_bottom: UnsafeRawPointer(bitPattern: layout.usableBottom), stack_size: layout.sizes.usableSize)
        let running = UnsafeMutablePointer<fs_running_stack>.allocate(capacity: 1)
        defer { running.deallocate() }
        running.initialize(
            to: fs_running_stack(
                guard_low: layout.guardRange.lowerBound, usable_bottom: layout.usableBottom, top: layout.top, label: nil))
        let start = nanoseconds()
        switch path {
        case .jump_raw:
            for _ in 0..<roundTrips { transfer = fs_jump_context(transfer.from, nil) }
        case .switch_scheduler_path:
            for _ in 0..<roundTrips { transfer = fs_switch_context(transfer.from, nil, &target) }
        case .switch_checked:
            for _ in 0..<roundTrips {
                precondition(Canary.isTopIntact(layout), "the benchmark's stack top was overwritten")
                fs_overflow_set_running_stack(running)
                transfer = fs_switch_context(transfer.from, nil, &target)
                fs_overflow_set_running_stack(nil)
            }
        }
        return nanoseconds() - start
    }
}

/// Switches back to whoever resumed it, forever: the benchmark's partner fiber.
private let partner: fs_entry = { transfer in
    var transfer = transfer
    while true { transfer = fs_jump_context(transfer.from, nil) }
}
