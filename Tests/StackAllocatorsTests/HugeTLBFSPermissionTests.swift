import Glibc
@_spi(Benchmarks) import StackAllocators
import StackTestSupport
import Testing

/// A hugetlbfs mount that the user cannot write is not a missing mount: libhugetlbfs ignores it, and the
/// error must say whose it is and what opens it, not ask for a mount that is already there.
@Suite("hugetlbfs mount permissions", needsNoSanitizer)
struct HugeTLBFSPermissionTests {
    /// The unprivileged user the check runs as (nobody on Debian).
    static let user: uid_t = 65534

    /// The default-size mounts, when every one is closed to `user`: owned by someone else, no write
    /// bit for others.
    static let closedMounts: [String] = {
        let mounts = HugePages.mounts
        let closed = mounts.filter { path in
            var status = stat()
            return stat(path, &status) == 0 && status.st_uid != user && status.st_mode & 0o002 == 0
        }
        return closed.count == mounts.count ? closed : []
    }()

    @Test("Allocating from hugetlbfs as a user who cannot write the mount names the mount, its owner and the chmod",
          .enabled(if: geteuid() == 0, "needs root, to drop to an unprivileged user"),
          .enabled(if: !closedMounts.isEmpty, "needs a default-size hugetlbfs mount that uid 65534 cannot write (/dev/hugepages as scripts/setup mounts it)"))
    func unwritableMountNamed() async throws {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [mount = Self.closedMounts[0] as String] in
            // As root, setgid and setuid change the real, effective and saved ids alike.
            precondition(setgroups(0, nil) == 0 && setgid(65534) == 0 && setuid(65534) == 0,
                         "dropping to uid 65534: errno \(errno)")
            let request = StackRequest(usableSize: 2 << 20, pages: .huge(HugePageRequest(.hugetlbfs())))
            do throws(StackError) {
                _ = try HugePageStackAllocator().allocate(request)
                preconditionFailure("uid 65534 got a stack from a hugetlbfs it cannot write")
            } catch {
                let text = error.description
                precondition(error.isUnsupported, "\(error)")
                precondition(text.contains(mount) && text.contains("uid 65534 can write") && text.contains("uid 0"), text)
                precondition(text.contains("chmod 1777 \(mount)") && text.contains("uid=65534,gid=65534"), text)
            }
        }
    }
}
