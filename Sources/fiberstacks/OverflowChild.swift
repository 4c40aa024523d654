import ArgumentParser
import Glibc
import StackAllocators

/// `fiberstacks overflow-child` (hidden): the process `verify` and the tests watch die. It installs the
/// overflow handler, then either overflows a labelled guarded stack on a secondary thread or writes
/// through a null pointer. Core dumps are switched off for it (the parent checks the signal, not a core).
struct OverflowChild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overflow-child",
        abstract: "Die by a stack overflow or another fault, for `verify` (internal).",
        shouldDisplay: false)

    /// What the child does.
    enum Fault: String, ExpressibleByArgument, CaseIterable {
        /// Recurse on a labelled guarded stack, on a secondary thread, until it overflows.
        case overflow
        /// Write through a null pointer on the main thread.
        case null
    }

    @Option(help: "The overflowing stack's label.")
    var label = "verify@worker-1"

    @Option(help: "The name of the thread that overflows.")
    var threadName = "fs-worker-1"

    @Option(help: "What to do: overflow or null.")
    var fault = Fault.overflow

    @Option(help: "The guard: automatic, lightweight or mprotect.")
    var guardMode = GuardMode.automatic

    @Flag(help: "Do not install the overflow handler (the control case).")
    var noHandler = false

    func run() throws {
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
        if !noHandler {
            try OverflowHandler.install()
        }
        switch fault {
        case .overflow:
            let stack = try MmapStackAllocator(guardMode: guardMode).allocate(StackRequest(usableSize: 256 << 10))
            stack.setOverflowLabel(label)
            try StackThread.run(on: stack.descriptor.layout, name: threadName) {
                do {
                    try AlternateSignalStack.installForCurrentThread()
                } catch {
                    FileStream.standardError.write("overflow-child: \(error)\n")
                    Glibc.exit(3)
                }
                StackThread.overflow()
            }
        case .null:
            UnsafeMutableRawPointer(bitPattern: 8)!.storeBytes(of: 1, as: UInt8.self)
        }
        FileStream.standardError.write("overflow-child: the fault did not kill the process\n")
        throw ExitCode(4)
    }
}

extension GuardMode: ExpressibleByArgument {}
