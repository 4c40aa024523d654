import Glibc
@_spi(Benchmarks) import GuardPages
import OverflowDetection
import StackTestSupport
import Synchronization
import Testing

@Suite("AlternateSignalStack")
struct AlternateSignalStackTests {
    @Test("A thread gets a guarded 64 KiB stack, idempotently; uninstall and thread exit unmap it", needsNoAddressSanitizerSignalStack)
    func lifecycle() async {
        // In a child process: after the thread exits, nothing else may map memory at the freed address.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let stack = try ScratchStack(usable: 256 << 10)
            try StackThread.run(on: stack.layout, name: "alt-stack") {
                do {
                    let initial = try AlternateSignalStack.current()
                    precondition(initial == nil, "a new thread has no alternate stack")
                    try AlternateSignalStack.installForCurrentThread()
                    let first = try AlternateSignalStack.current()!
                    precondition(first.count == AlternateSignalStack.defaultSize, "size \(first.count)")
                    precondition(AlternateSignalStack.isOursForCurrentThread)
                    let guardAccessible = try Probe.isAccessible(first.lowerBound - 1)
                    let bottomAccessible = try Probe.isAccessible(first.lowerBound)
                    precondition(!guardAccessible && bottomAccessible, "no guard page right below the stack")
                    try AlternateSignalStack.installForCurrentThread()
                    let again = try AlternateSignalStack.current()
                    precondition(again == first, "a second install changed it")
                    try AlternateSignalStack.uninstallForCurrentThread()
                    let removed = try AlternateSignalStack.current()
                    let unmapped = try Probe.isUnmapped(first.lowerBound - UInt(systemPageSize)..<first.upperBound)
                    precondition(removed == nil && unmapped, "uninstall left it installed or mapped")
                    try AlternateSignalStack.installForCurrentThread(size: 100_000)
                    let second = try AlternateSignalStack.current()!
                    precondition(second.count == 102_400, "rounded up to pages: \(second.count)")
                    exitedStack.withLock { $0 = second }
                } catch {
                    preconditionFailure("\(error)")
                }
            }
            let second = exitedStack.withLock { $0 }!
            let unmapped = try Probe.isUnmapped(second.lowerBound - UInt(systemPageSize)..<second.upperBound)
            ensure(unmapped, "not unmapped at thread exit")
        }
    }

    @Test("A thread that already has an alternate stack keeps it")
    func keepsExisting() throws {
        let stack = try ScratchStack(usable: 256 << 10)
        let seen = Mutex<[String]>([])
        try StackThread.run(on: stack.layout, name: "alt-existing") {
            let own = UnsafeMutableRawPointer.allocate(byteCount: 64 << 10, alignment: 16)
            defer { own.deallocate() }
            var wanted = stack_t(ss_sp: own, ss_flags: 0, ss_size: 64 << 10)
            var off = stack_t(ss_sp: nil, ss_flags: Int32(SS_DISABLE), ss_size: 0)
            guard sigaltstack(&wanted, nil) == 0 else { return seen.withLock { $0.append("sigaltstack failed") } }
            defer { sigaltstack(&off, nil) }
            func record(_ what: String) { seen.withLock { $0.append(what) } }
            do {
                try AlternateSignalStack.installForCurrentThread()
                record("kept: \(try AlternateSignalStack.current()?.lowerBound == UInt(bitPattern: own))")
                record("ours: \(AlternateSignalStack.isOursForCurrentThread)")
                try AlternateSignalStack.uninstallForCurrentThread()
                record("kept after uninstall: \(try AlternateSignalStack.current()?.lowerBound == UInt(bitPattern: own))")
            } catch {
                record("error: \(error)")
            }
        }
        #expect(seen.withLock { $0 } == ["kept: true", "ours: false", "kept after uninstall: true"])
    }

    @Test("Bad sizes are refused")
    func badSizes() {
        #expect(throws: StackError.self) { try AlternateSignalStack.installForCurrentThread(size: 0) }
        #expect(throws: StackError.self) { try AlternateSignalStack.installForCurrentThread(size: -1) }
    }
}

/// The range of the second stack the exit test installs, read after its thread has exited.
private let exitedStack = Mutex<Range<UInt>?>(nil)
