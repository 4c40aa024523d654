@_spi(Benchmarks) import OverflowDetection
import Glibc
import StackAllocators
import StackTestSupport
import Testing

// Real faults, in child processes (exit tests): the handler is process-wide, and the fault kills.
// Swift Testing runs exit tests with SWIFT_BACKTRACE=enable=no, so the handler found at install is
// SIG_DFL unless a test installs its own; the chain to the Swift runtime's backtracer is tested
// through the `fiberstacks` binary in fiberstacksTests.

/// Overflows a guarded stack labelled `label` on a secondary thread named `thread`.
private func overflowOnSecondaryThread(
    mode: GuardMode, label: String, thread: String, alternateStack: Bool = true
) throws -> Never {
    let stack = try MmapStackAllocator(guardMode: mode).allocate(StackRequest(usableSize: 128 << 10))
    precondition(stack.setOverflowLabel(label), "a guarded mmap stack is in the registry")
    try StackThread.run(on: stack.descriptor.layout, name: thread) {
        if alternateStack { try! AlternateSignalStack.installForCurrentThread() }
        StackThread.overflow()
    }
    preconditionFailure("the overflow did not kill the process")
}

/// Installs a SIGSEGV and SIGBUS handler of the user's that writes which signal and where, then exits 42.
private func installUserSigInfoHandler() {
    var action = sigaction()
    action.sa_flags = SA_SIGINFO
    action.__sigaction_handler.sa_sigaction = { signal, info, _ in
        let address = UInt(bitPattern: info?.pointee._sifields._sigfault.si_addr)
        let text = "user handler: signal \(signal) at 0x\(String(address, radix: 16))\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        _exit(42)
    }
    precondition(sigaction(SIGSEGV, &action, nil) == 0 && sigaction(SIGBUS, &action, nil) == 0)
}

/// Writes through a null pointer plus 8.
private func dereferenceNull() -> Never {
    UnsafeMutableRawPointer(bitPattern: 8)!.storeBytes(of: 1, as: UInt8.self)
    preconditionFailure("the null dereference did not fault")
}

/// Text of the standard error a child left.
private func standardError(_ result: ExitTest.Result?) throws -> String {
    String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
}

@Suite("Overflow handler")
struct OverflowHandlerTests {
    static var guardModes: [GuardMode] {
        GuardMode.forcible
    }

    @Test("Deep recursion on a guarded stack on a secondary thread dies by SIGSEGV, naming the fiber", arguments: guardModes)
    func overflowIsNamed(mode: GuardMode) async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) { [mode] in
            try OverflowHandler.install()
            try overflowOnSecondaryThread(mode: mode, label: "job-17@worker-1", thread: "worker-1")
        }
        let text = try standardError(result)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("fiberstacks: stack overflow") }, "\(text)")
        #expect(line.contains(#"in fiber "job-17@worker-1" (thread "#))
        #expect(line.contains(#" "worker-1"): fault at 0x"#))
        #expect(line.contains("usable 131072 B, guard 65536 B"))
        #expect(line.contains("raise the stack size (StackRequest.usableSize; FiberConfig.usableSize for a FiberScheduler) or "
            + "the guard size (StackRequest.guardSize; FiberConfig.guardSize)"))
        let distance = try #require(line.split(separator: " is ").last?.split(separator: " ").first.flatMap { Int($0) })
        #expect((1...(64 << 10)).contains(distance), "\(distance) bytes below the usable bottom")
    }

    @Test("Without an alternate signal stack the overflowing thread dies by SIGSEGV without a word", needsNoAddressSanitizerSignalStack)
    func noAlternateStack() async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) {
            try OverflowHandler.install()
            try overflowOnSecondaryThread(mode: .automatic, label: "silent", thread: "worker-2", alternateStack: false)
        }
        let text = try standardError(result)
        #expect(!text.contains("stack overflow"))
    }

    @Test("A null dereference elsewhere dies by SIGSEGV, as without the handler, and is not called an overflow", needsNoSanitizer)
    func nullDereference() async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) {
            try OverflowHandler.install()
            let stack = try MmapStackAllocator().allocate(StackRequest(usableSize: 64 << 10))
            stack.setOverflowLabel("bystander")
            dereferenceNull()
        }
        let text = try standardError(result)
        #expect(!text.contains("stack overflow"))
    }

    @Test("SIGSEGV sent by kill is not taken for a fault: the default action still kills", needsNoSanitizer)
    func sentSignal() async {
        await #expect(processExitsWith: .signal(SIGSEGV)) {
            try OverflowHandler.install()
            raise(SIGSEGV)
            fail("raise(SIGSEGV) returned")
        }
    }

    @Test("Installing twice is harmless; a user SA_SIGINFO handler installed before ours still gets other faults")
    func userSigInfoHandler() async throws {
        let result = await #expect(processExitsWith: .exitCode(42), observing: [\.standardErrorContent]) {
            installUserSigInfoHandler()
            try OverflowHandler.install()
            try OverflowHandler.install()
            ensure(OverflowHandler.isInstalled)
            dereferenceNull()
        }
        let text = try standardError(result)
        #expect(text.contains("user handler: signal \(SIGSEGV) at 0x8\n"))
    }

    @Test("A user handler without SA_SIGINFO installed before ours still gets other faults")
    func userPlainHandler() async throws {
        let result = await #expect(processExitsWith: .exitCode(43), observing: [\.standardErrorContent]) {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                _ = "plain handler\n".withCString { write(2, $0, strlen($0)) }
                _exit(signal == SIGSEGV ? 43 : 44)
            }
            ensure(sigaction(SIGSEGV, &action, nil) == 0)
            try OverflowHandler.install()
            dereferenceNull()
        }
        let text = try standardError(result)
        #expect(text.contains("plain handler"))
    }

    @Test("A SIGBUS that is not in a guard goes to the handler installed before ours")
    func busChains() async throws {
        let result = await #expect(processExitsWith: .exitCode(42), observing: [\.standardErrorContent]) {
            installUserSigInfoHandler()
            try OverflowHandler.install()
            let file = tmpfile()!  // empty: touching a mapping of it raises SIGBUS
            let page = mmap(nil, systemPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fileno(file), 0)!
            ensure(page != MAP_FAILED)
            page.storeBytes(of: 1, as: UInt8.self)
            fail("no SIGBUS")
        }
        let text = try standardError(result)
        #expect(text.contains("user handler: signal \(SIGBUS) at 0x"))
    }

    @Test("With a user handler installed before ours, an overflow is still ours: named, then SIGSEGV")
    func overflowWithUserHandler() async throws {
        let result = await #expect(processExitsWith: .signal(SIGSEGV), observing: [\.standardErrorContent]) {
            installUserSigInfoHandler()
            try OverflowHandler.install()
            try overflowOnSecondaryThread(mode: .automatic, label: "job-9@worker-3", thread: "worker-3")
        }
        let text = try standardError(result)
        #expect(text.contains(#"stack overflow in fiber "job-9@worker-3""#))
        #expect(!text.contains("user handler"))
    }

    @Test("Guarded mmap stacks are registered while they live, unguarded ones are not")
    func registration() async {
        // In a child process: once released, the address may be reused by a stack of a parallel test.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let allocator = try MmapStackAllocator()
            let baseline = GuardRegistry.count
            let stack = try allocator.allocate(StackRequest(usableSize: 64 << 10))
            let layout = stack.descriptor.layout
            ensure(GuardRegistry.count == baseline + 1)
            ensure(GuardRegistry.entry(guarding: layout.usableBottom - 1)?.usableRange == layout.usableRange)
            ensure(stack.overflowLabel == "")
            ensure(stack.setOverflowLabel("job-5@worker-0"))
            ensure(stack.overflowLabel == "job-5@worker-0")
            stack.release()
            ensure(GuardRegistry.entry(forStackAt: layout.usableBottom) == nil)
            ensure(GuardRegistry.count == baseline)
            let unguarded = try allocator.allocate(StackRequest(usableSize: 64 << 10, guardSize: 0))
            ensure(!unguarded.setOverflowLabel("nobody"))
            ensure(unguarded.overflowLabel == nil)
            ensure(GuardRegistry.count == baseline)
            ensure(allocator.stats.releaseFailures == 0)
        }
    }
}
