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
    /// Prefaulting the usable range failed; nothing was left half-mapped.
    case prefaultFailed(Errno, strategy: PrefaultStrategy, address: UInt)
    /// A probe syscall itself failed (not the EFAULT that means "inaccessible").
    case probeFailed(Errno, what: String)
    /// Reading a kernel interface file (procfs, sysfs) failed.
    case systemFileUnreadable(path: String, Errno)
    /// The kernel or the machine lacks a capability; `fix` says how to get it.
    case capabilityMissing(String, fix: String)
    /// A `FiberConfig` field holds a value the scheduler cannot use.
    case invalidFiberConfig(field: String, reason: String)
    /// A job needed a fiber and its worker's pool was at `FiberConfig.maxPoolSize`, all in use.
    case fiberPoolExhausted(worker: Int, maxPoolSize: Int)
    /// The scheduler was shut down with `.cancel` before the job finished (or while it waited).
    case jobCancelled
    /// The job was submitted after `shutdown` began.
    case schedulerShutDown
    /// `pthread_create` failed for a scheduler worker.
    case threadCreationFailed(Errno)

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
        case .invalidFiberConfig(let field, let reason):
            return "invalid FiberConfig.\(field): \(reason)"
        case .fiberPoolExhausted(let worker, let maxPoolSize):
            return "worker \(worker) has all \(maxPoolSize) fibers of its pool in use; raise FiberConfig.maxPoolSize, "
                + "or set FiberConfig.whenExhausted = .wait to queue jobs until a fiber is free"
        case .jobCancelled:
            return "the job was cancelled by shutdown(.cancel); use shutdown(.drain) to let queued and waiting jobs finish"
        case .schedulerShutDown:
            return "the job was submitted after the scheduler began shutting down; submit jobs before calling shutdown"
        case .threadCreationFailed(let errno):
            return "creating a worker thread failed: \(errno) (\(errno.rawValue)); raise the thread limits "
                + "(ulimit -u, /proc/sys/kernel/threads-max, cgroup pids.max) or lower FiberConfig.workerCount"
        }
    }
}
