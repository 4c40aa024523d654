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
    /// 6.13", the release `since`) on the first of `pages` scratch pages; `works` then checks its effect.
    package init(
        _ advice: Int32, name: String, lacks: String, since: (Int, Int)? = nil, pages: Int, works: (UInt) -> Bool = { _ in true }
    ) {
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
                missing = Self.refusal(errno, name: name, lacks: lacks, since: since)
            }
        }
    }

    /// Why madvise(2) refused the advice `name` with `errno`, in words a user can act on: EINVAL is what a
    /// kernel without the advice returns (it `lacks` what the advice needs); EPERM or ENOSYS on a kernel
    /// that has it come from a seccomp filter or sandbox, which a kernel upgrade would not fix.
    /// A running kernel at least `since` that answers EINVAL has the advice: a filter is the likelier cause.
    package static func refusal(_ errno: Errno, name: String, lacks: String, since: (Int, Int)? = nil) -> String {
        guard errno != .invalidArgument else {
            guard let since, let running = kernelVersion, running >= since else { return "\(name) \(lacks)" }
            return "\(name) \(lacks); this kernel is newer, so a seccomp filter that answers EINVAL (or a kernel "
                + "built without the advice) refuses it: allow madvise(2) in the container's seccomp profile"
        }
        return "\(name) fails with \(errno) (\(errno.rawValue)) on Linux \(kernelRelease): a seccomp filter or "
            + "sandbox refuses madvise(2); allow it in the container's seccomp profile"
    }
}

/// The running kernel's major and minor version (from `uname -r`), nil when unreadable.
package let kernelVersion: (Int, Int)? = {
    let numbers = kernelRelease.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
    return numbers.count == 2 ? (numbers[0], numbers[1]) : nil
}()
