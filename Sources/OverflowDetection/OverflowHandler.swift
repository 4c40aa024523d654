import CStackSupport
import Glibc
import GuardPages
import SystemPackage

/// The SIGSEGV/SIGBUS handler that turns a guard hit into a diagnostic naming the fiber.
///
/// For a fault inside a range in the guard registry, it writes one line to stderr (the label, the thread,
/// the faulting address, how far below the usable bottom it is, the sizes, and what to raise), then
/// restores the default disposition so the process still dies by the signal, with a core dump. Every
/// other fault goes to the handler installed before it (the Swift runtime's backtracer, your own), or
/// to the default action. The handler runs on the thread's alternate signal stack: a thread without
/// one (see `AlternateSignalStack`) dies silently on an overflow. See docs/overflow-detection.md.
public enum OverflowHandler {
    /// Installs the handler for SIGSEGV and SIGBUS. Idempotent: later calls do nothing. Install it after
    /// any handler of your own that it should chain to.
    public static func install() throws(StackError) {
        let code = fs_overflow_handler_install()
        if code != 0 { throw .signalSetupFailed(Errno(rawValue: code), what: "sigaction(SIGSEGV/SIGBUS)") }
    }

    /// Whether `install()` has succeeded in this process.
    package static var isInstalled: Bool { fs_overflow_handler_installed() == 1 }
}
