import CStackSupport
import Glibc
import GuardPages
import SystemPackage

/// Alternate signal stacks for the threads that run fibers.
///
/// A signal handler cannot run on a stack that has just overflowed: the kernel needs room to push the
/// signal frame. The Swift runtime gives an alternate stack to the main thread only, so every worker
/// thread installs its own before running fibers (and any other thread may). Ours are mapped with a
/// PROT_NONE guard page below them and unmapped when the thread exits.
public enum AlternateSignalStack {
    /// Default size: 64 KiB, room for our handler and for the Swift runtime's backtracer it chains to.
    @usableFromInline package static let defaultSize = 64 << 10

    /// Gives the calling thread an alternate signal stack of `size` bytes (rounded up to the page size,
    /// at least the kernel's minimum), unless it already has one: then nothing changes. Idempotent.
    public static func installForCurrentThread(size: Int = defaultSize) throws(StackError) {
        guard size > 0, size <= StackSizes.maximumUsableSize else {
            throw .invalidSize(requested: size, reason: "an alternate signal stack must be positive and at most 4 GiB")
        }
        var step: Int32 = 0
        let code = fs_alt_signal_stack_install(size, &step)
        guard code != 0 else { return }
        let errno = Errno(rawValue: code)
        switch Int(step) {
        case Int(FS_ALT_STACK_STEP_MAP): throw .mappingFailed(errno, size: size + systemPageSize)
        case Int(FS_ALT_STACK_STEP_GUARD): throw .guardInstallFailed(errno, mechanism: .protNone)
        case Int(FS_ALT_STACK_STEP_RECORD): throw .signalSetupFailed(errno, what: "pthread key for the alternate signal stack")
        default: throw .signalSetupFailed(errno, what: "sigaltstack")
        }
    }

    /// Removes and unmaps the calling thread's alternate signal stack if `installForCurrentThread` made
    /// it (thread exit does this too). Throws `.systemCallFailed` (EPERM) when called on that stack.
    public static func uninstallForCurrentThread() throws(StackError) {
        let code = fs_alt_signal_stack_uninstall()
        if code != 0 { throw .signalSetupFailed(Errno(rawValue: code), what: "sigaltstack(SS_DISABLE)") }
    }

    /// The calling thread's alternate signal stack, whoever installed it; nil when it has none.
    package static func current() throws(StackError) -> Range<UInt>? {
        switch Syscall.alternateSignalStack() {
        case .success(let stack):
            guard stack.ss_flags & Int32(SS_DISABLE) == 0, let base = stack.ss_sp else { return nil }
            return UInt(bitPattern: base)..<UInt(bitPattern: base) + UInt(stack.ss_size)
        case .failure(let errno):
            throw .signalSetupFailed(errno, what: "sigaltstack (query)")
        }
    }

    /// Whether the calling thread's alternate signal stack is one that `installForCurrentThread` made.
    package static var isOursForCurrentThread: Bool { fs_alt_signal_stack_is_ours() == 1 }
}
