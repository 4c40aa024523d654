import Glibc
@_spi(Benchmarks) import StackAllocators
import StackTestSupport
import Testing

/// A hugetlbfs mount that the user cannot write is not a missing mount: libhugetlbfs ignores it, and the
/// error must say whose it is and what opens it, not ask for a mount that is already there.
@Suite("hugetlbfs mount permissions", needsNoSanitizer)
struct HugeTLBFSPermissionTests {
    @Test("Allocating from hugetlbfs as a user who cannot write the mount names the mount, its owner and the chmod",
          needsHugeTLBMountClosedToUnprivilegedUser)
    func unwritableMountNamed() async throws {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [mount = hugeTLBMountsClosedToUnprivilegedUser[0] as String] in
            // As root, setgid and setuid change the real, effective and saved ids alike.
            let user = unprivilegedUser
            ensure(setgroups(0, nil) == 0 && setgid(user) == 0 && setuid(user) == 0, "dropping to uid \(user): errno \(errno)")
            let request = StackRequest(usableSize: 2 << 20, pages: .huge(HugePageRequest(.hugetlbfs())))
            do throws(StackError) {
                _ = try HugePageStackAllocator().allocate(request)
                fail("uid \(user) got a stack from a hugetlbfs it cannot write")
            } catch {
                let text = error.description
                ensure(error.isUnsupported, "\(error)")
                ensure(text.contains(mount) && text.contains("uid \(user) can write") && text.contains("uid 0"), text)
                ensure(text.contains("chmod 1777 \(mount)") && text.contains("uid=\(user),gid=\(user)"), text)
            }
        }
    }
}
