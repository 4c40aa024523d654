import Glibc
@_spi(Benchmarks) import StackAllocators
import Testing

/// The unprivileged user the permission tests run as or drop to (nobody on Debian).
public let unprivilegedUser: uid_t = 65534

/// The hugetlbfs mounts of the default huge page size, when `unprivilegedUser` can write none of them
/// (each owned by someone else, with no write bit for others); empty otherwise, or when there is none.
public let hugeTLBMountsClosedToUnprivilegedUser: [String] = {
    let mounts = HugePageSystem.hugeTLBMounts().filter { $0.pageSize == HugePageSystem.defaultHugePageSize() }.map(\.path)
    let closed = mounts.filter { path in
        var status = stat()
        return stat(path, &status) == 0 && status.st_uid != unprivilegedUser && status.st_mode & 0o002 == 0
    }
    return closed.count == mounts.count ? closed : []
}()

/// For tests that need a hugetlbfs mount `unprivilegedUser` cannot write, and root to act as that user.
public let needsHugeTLBMountClosedToUnprivilegedUser = ConditionTrait.enabled(
    if: geteuid() == 0 && !hugeTLBMountsClosedToUnprivilegedUser.isEmpty,
    Comment(rawValue: "needs root and a default-size hugetlbfs mount that uid \(unprivilegedUser) cannot write "
        + "(/dev/hugepages as scripts/setup mounts it)"))
