import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import StackTestSupport
import Testing

// Each test makes a new directory and mounts a hugetlbfs of its own on it inside its exit test's child, in a
// mount namespace of the child's own: the mount goes when the child ends, however it ends (a killed test run
// leaves no mount behind), and no other process sees it. The parent removes the empty directory.

@Suite("hugetlbfs mount limit", needsNoSanitizer)
struct HugeTLBFSMountLimitTests {
    static let needTwoMiB: Comment = "needs 2 MiB hugetlb pages (CONFIG_HUGETLBFS, /sys/kernel/mm/hugepages)"

    @Test("A size=4M hugetlbfs refuses an 8 MiB stack: the error names the mount, its limit and free pages, not nr_hugepages",
          .enabled(if: HugePages.size == 2 << 20, needTwoMiB), needsMountPrivilege)
    func mountLimitNamed() async throws {
        let directory = try makeTemporaryDirectory()
        defer { expectRemoved(directory) }
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [directory = directory as String] in
            mountPrivately(directory, options: "pagesize=2M,size=4M")
            let allocator = HugePageStackAllocator()
            // One 2 MiB stack in the mount first (when the pool has a page), so `free` is not just the limit.
            let holdOne = HugePages.haveFree(1)
            let held = holdOne ? try allocator.allocate(stackRequest(2 << 20, mount: directory)) : nil
            let expectedFree = holdOne ? 1 : 2
            do throws(StackError) {
                _ = try allocator.allocate(stackRequest(8 << 20, mount: directory))
                fail("an 8 MiB stack came from a 4 MiB hugetlbfs")
            } catch {
                guard case .hugeTLBFSMountFull(let mount, let pageSize, let limit, let free, let needed) = error.reason else {
                    fail("expected hugeTLBFSMountFull, got \(error)")
                }
                ensure(mount == directory && pageSize == 2 << 20, "\(error)")
                ensure(limit == 2 && free == expectedFree && needed == 4, "\(error)")
                let text = error.description
                ensure(text.contains(directory) && text.contains("limited to 2 2 MiB pages"), text)
                ensure(text.contains("\(expectedFree) free, 4 needed"), text)
                ensure(text.contains("size=\(expectedFree == 2 ? 8 : 10)M") && !text.contains("nr_hugepages"), text)
            }
            ensure(allocator.stats.live == (holdOne ? 1 : 0), "\(allocator.stats)")
            _ = consume held
            let leaked = try HugePages.heldByThisProcess()
            ensure(leaked == 0, "\(leaked) B of hugetlb still mapped after the failure and the release")
        }
    }

    @Test("Mounting again with the options the error names lets the same 8 MiB stack be allocated",
          .enabled(if: HugePages.size == 2 << 20 && HugePages.haveFree(4), HugePages.needFree),
          needsMountPrivilege)
    func namedFixWorks() async throws {
        let directory = try makeTemporaryDirectory()
        defer { expectRemoved(directory) }
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [directory = directory as String] in
            mountPrivately(directory, options: "pagesize=2M,size=4M")
            let allocator = HugePageStackAllocator()
            let request = stackRequest(8 << 20, mount: directory)
            let options: String
            do throws(StackError) {
                _ = try allocator.allocate(request)
                fail("an 8 MiB stack came from a 4 MiB hugetlbfs")
            } catch {
                // The options of the `mount -t hugetlbfs -o OPTIONS none MOUNT` the error names.
                let text = error.description
                let named = text.split(separator: "mount -t hugetlbfs -o ").dropFirst().first?.split(separator: " ").first
                ensure(named != nil && text.contains(" none \(directory)`"), text)
                options = String(named!)
            }
            ensure(umount2(directory, 0) == 0, "umount: \(errno)")
            let remounted = options.withCString { mount("none", directory, "hugetlbfs", 0, $0) }
            ensure(remounted == 0, "mount -o \(options): \(errno)")
            let stack = try allocator.allocate(request)
            let backed = try HugePages.heldByThisProcess()
            ensure(backed == 8 << 20, "\(backed) B of hugetlb mapped for an 8 MiB stack")
            _ = consume stack
        }
    }
}

/// A stack request of `usable` bytes from a file on the hugetlbfs at `mount`.
private func stackRequest(_ usable: Int, mount: String) -> StackRequest {
    StackRequest(usableSize: usable, pages: .huge(HugePageRequest(.hugetlbfs(mount: mount))))
}

/// A new empty directory under /tmp.
private func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/fiberstacks-hugetlbfs.XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
    guard made else { throw DirectoryFailure(errno: errno) }
    return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

private struct DirectoryFailure: Error {
    let errno: Int32
}

/// Removes `directory`, which must be empty: a mount left on it, or a file in it, fails the test.
private func expectRemoved(_ directory: String) {
    #expect(rmdir(directory) == 0, "rmdir \(directory): errno \(errno)")
}

/// In an exit test's child: moves the child into a mount namespace of its own, then mounts a hugetlbfs with
/// `options` on `directory` there. The parent's namespace never has the mount.
private func mountPrivately(_ directory: String, options: String) {
    enterPrivateMountNamespace()
    let mounted = options.withCString { mount("none", directory, "hugetlbfs", 0, $0) }
    ensure(mounted == 0, "mount -t hugetlbfs -o \(options) none \(directory): errno \(errno)")
    guard let parents = try? SystemFile.read("/proc/\(getppid())/mountinfo") else {
        fail("/proc/\(getppid())/mountinfo, the parent's mounts, is unreadable")
    }
    ensure(!parents.contains(" \(directory) "), "the parent's namespace has the mount on \(directory)")
}
