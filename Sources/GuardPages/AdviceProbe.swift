import CStackSupport
import Glibc
import SystemPackage

/// Whether a madvise(2) advice works in this process, probed once on a scratch mapping, and if not, why:
/// a kernel that predates it refuses it with EINVAL; on a kernel that has it, a seccomp filter or a
/// sandbox may refuse madvise itself (EPERM, ENOSYS), which a newer kernel would not fix.
@_spi(Benchmarks) public struct AdviceProbe: Sendable {
    /// Why the advice does not work here, in words a user can act on; nil when it works.
    @_spi(Benchmarks) public let missing: String?

    /// Whether the advice works here.
    @_spi(Benchmarks) public var isSupported: Bool { missing == nil }

    /// Probes `advice` (called `name`; a kernel without it `lacks` what it needs, such as "needs Linux >=
    /// 6.13") on the first of `pages` scratch pages; `works` then checks its effect on them.
    package init(_ advice: Int32, name: String, lacks: String, pages: Int, works: (UInt) -> Bool = { _ in true }) {
        let size = pages * systemPageSize
        switch Syscall.map(size: size, flags: FS_MAP_PRIVATE | FS_MAP_ANONYMOUS) {
        case .failure(let errno):
            missing = "\(name) could not be probed: mmap of \(size) scratch bytes failed with \(errno)"
        case .success(let scratch):
            defer { _ = Syscall.unmap(scratch, size: size) }
            switch Syscall.advise(scratch, size: systemPageSize, advice) {
            case .success:
                missing = works(scratch) ? nil : "\(name) was accepted but had no effect (Linux \(kernelRelease))"
            case .failure(let errno):
                missing = Self.refusal(errno, name: name, lacks: lacks)
            }
        }
    }

    /// Why madvise(2) refused the advice `name` with `errno`, in words a user can act on: EINVAL is what a
    /// kernel without the advice returns (it `lacks` what the advice needs); EPERM or ENOSYS on a kernel
    /// that has it come from a seccomp filter or sandbox, which a kernel upgrade would not fix.
    package static func refusal(_ errno: Errno, name: String, lacks: String) -> String {
        guard errno != .invalidArgument else { return "\(name) \(lacks)" }
        return "\(name) fails with \(errno) (\(errno.rawValue)) on Linux \(kernelRelease): a seccomp filter or "
            + "sandbox refuses madvise(2); allow it in the container's seccomp profile"
    }
}
