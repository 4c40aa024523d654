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
    /// A huge page pool had fewer free pages than a stack needs. `free` excludes pages already promised
    /// to other mappings; `controlFile` is the file to write to grow the pool (global or per node).
    case hugePagesExhausted(pageSize: Int, needed: Int, free: Int, node: Int?, controlFile: String)
    /// A path given as a hugetlbfs mount is not on a hugetlbfs file system (or does not exist).
    case notHugeTLBFSMount(path: String)
    /// The canary at the bottom of a canary-guarded stack was overwritten: the fiber overflowed.
    case canaryCorrupted(stack: String)

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
        case .hugePagesExhausted(let pageSize, let needed, let free, let node, let controlFile):
            let pool = node.map { "node \($0)'s" } ?? "the"
            return "\(pool) \(formatByteCount(pageSize)) huge page pool has \(free) free pages, \(needed) needed: "
                + "add at least \(max(needed - free, 1)) by writing a larger page count to \(controlFile) (as root), "
                + "or ask for HugePageRequest.ExhaustionPolicy.fallback"
        case .notHugeTLBFSMount(let path):
            return "\(path) is not a hugetlbfs mount: mount one (as root) with "
                + "`mount -t hugetlbfs -o pagesize=2M none \(path)` (pagesize= picks the huge page size), "
                + "or pass mount: nil to use the one libhugetlbfs finds"
        case .canaryCorrupted(let stack):
            return "the canary at the bottom of \(stack) was overwritten: its fiber overflowed the stack "
                + "(packed stacks have no hardware guard); give it a larger stack or use one stack per "
                + "huge-page region, which keeps a hardware guard"
        }
    }
}
