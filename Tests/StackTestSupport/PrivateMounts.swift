import CSandbox
import Glibc
@_spi(Benchmarks) import GuardPages
import Testing

/// Whether this process may mount: CAP_SYS_ADMIN (bit 21) in its effective set (/proc/self/status CapEff),
/// what mount(2) and a mount namespace of a test's own need.
public let canMount: Bool = {
    guard let status = try? SystemFile.read("/proc/self/status"),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
        let mask = line.split(whereSeparator: \.isWhitespace).last.flatMap({ UInt64($0, radix: 16) })
    else { return false }
    return mask & (1 << 21) != 0
}()

/// For tests that mount in a namespace of their own.
public let needsMountPrivilege = ConditionTrait.enabled(
    if: canMount, "needs CAP_SYS_ADMIN to mount in a mount namespace of its own (run as root)")

/// In an exit test's child: moves the child into a mount namespace of its own. What it mounts from then on
/// no other process sees, and it all goes when the child ends, however it ends.
public func enterPrivateMountNamespace() {
    let isolated = fs_test_private_mounts()
    ensure(isolated == 0, "a mount namespace of the child's own (unshare, mount --make-rprivate /): errno \(isolated)")
}

/// In an exit test's child: a mount namespace of its own with an empty tmpfs over /sys, as in a container
/// started without sysfs. Processes it starts inherit the namespace.
public func hideSysfs() {
    enterPrivateMountNamespace()
    ensure(mount("none", "/sys", "tmpfs", 0, nil) == 0, "mount -t tmpfs none /sys: errno \(errno)")
}

/// In an exit test's child: a mount namespace of its own with an empty tmpfs over `path`, as a container
/// masks part of /sys. Processes it starts inherit the namespace.
public func hideDirectory(_ path: String) {
    enterPrivateMountNamespace()
    ensure(mount("none", path, "tmpfs", 0, nil) == 0, "mount -t tmpfs none \(path): errno \(errno)")
}
