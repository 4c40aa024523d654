import SystemPackage

/// Every failure of the stack subsystem, each naming its cause and the fix.
///
/// Syscall failures carry the raw `Errno`; `description` says what failed, why, and what to change
/// (the sysctl, the sysfs file, the package). Programmer errors in bad input are errors too, never traps.
public enum StackError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The usable size is zero, negative, larger than `StackSizes.maximumUsableSize`, or overflows when rounded.
    case invalidSize(requested: Int, reason: String)
    /// The guard size is negative, larger than `StackSizes.maximumGuardSize`, or overflows when rounded.
    case invalidGuard(requested: Int, reason: String)
    /// A page size that is not a power of two of at least 4 KiB, or one this kernel does not offer.
    case invalidPageSize(requested: Int, reason: String)
    /// `mmap` failed for a mapping of `size` bytes.
    case mappingFailed(Errno, size: Int)
    /// Installing the guard failed (`MADV_GUARD_INSTALL` or `mprotect(PROT_NONE)`).
    case guardInstallFailed(Errno, mechanism: GuardMechanism)
    /// The process is at `vm.max_map_count`: no new mapping (or mapping split) is possible.
    case mapCountExhausted(limit: Int, current: Int)
    /// An allocator with mprotect guards stopped before `vm.max_map_count`: the process has `current` of
    /// `limit` mappings, `reserve` of them are left to the rest of the process, and each new guarded stack
    /// costs two. `stacksRemaining` more would fit below the hard limit itself.
    case mapCountReserveReached(limit: Int, current: Int, reserve: Int, stacksRemaining: Int)
    /// Prefaulting the usable range failed; nothing was left half-mapped.
    case prefaultFailed(Errno, strategy: PrefaultStrategy, address: UInt)
    /// A probe syscall itself failed (not the EFAULT that means "inaccessible").
    case probeFailed(Errno, what: String)
    /// Reading a kernel interface file (procfs, sysfs) failed.
    case systemFileUnreadable(path: String, Errno)
    /// The kernel or the machine lacks a capability; `fix` says how to get it.
    case capabilityMissing(String, fix: String)

    public var description: String {
        switch self {
        case .invalidSize(let requested, let reason):
            return "invalid stack size \(requested): \(reason)"
        case .invalidGuard(let requested, let reason):
            return "invalid guard size \(requested): \(reason)"
        case .invalidPageSize(let requested, let reason):
            return "invalid page size \(requested): \(reason)"
        case .mappingFailed(let errno, let size):
            return "mmap of \(size) bytes failed: \(errno) (\(errno.rawValue)); "
                + "check memory limits (ulimit -v, cgroup memory.max) and vm.overcommit_memory"
        case .guardInstallFailed(let errno, let mechanism):
            let fix = mechanism == .lightweight
                ? "lightweight guards need Linux >= 6.13; use GuardMode.mprotect on older kernels"
                : "mprotect(PROT_NONE) failed; if ENOMEM, raise vm.max_map_count"
            return "installing the \(mechanism) guard failed: \(errno) (\(errno.rawValue)); \(fix)"
        case .mapCountExhausted(let limit, let current):
            return "the process has \(current) of vm.max_map_count=\(limit) mappings; raise it with "
                + "`sysctl -w vm.max_map_count=\(max(limit * 2, 262_144))` (persist in /etc/sysctl.d/), "
                + "or use lightweight guards (Linux >= 6.13), which add no mapping"
        case .mapCountReserveReached(let limit, let current, let reserve, let stacksRemaining):
            return "mprotect guards cost two mappings per stack: the process has \(current) of vm.max_map_count=\(limit) "
                + "mappings and \(reserve) are kept for the rest of the process, so no new guarded stack is carved "
                + "(\(stacksRemaining) more would fit below the limit itself); release stacks (their slots are reused "
                + "without new mappings), raise the limit with `sysctl -w vm.max_map_count=\(max(limit * 2, 262_144))` "
                + "(persist in /etc/sysctl.d/), or use lightweight guards (MADV_GUARD_INSTALL, Linux >= 6.13), which add no mapping"
        case .prefaultFailed(let errno, let strategy, let address):
            return "prefault (\(strategy)) failed at 0x\(String(address, radix: 16)): \(errno) (\(errno.rawValue)); "
                + "for huge pages raise the pool (/proc/sys/vm/nr_hugepages), otherwise check memory limits"
        case .probeFailed(let errno, let what):
            return "probe of \(what) failed: \(errno) (\(errno.rawValue)); process_vm_readv and mincore must be "
                + "allowed (seccomp profiles may block process_vm_readv)"
        case .systemFileUnreadable(let path, let errno):
            return "cannot read \(path): \(errno) (\(errno.rawValue)); is procfs/sysfs mounted?"
        case .capabilityMissing(let what, let fix):
            return "\(what) is not available: \(fix)"
        }
    }
}
