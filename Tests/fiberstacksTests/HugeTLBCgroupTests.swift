import Foundation
import Glibc
@_spi(Benchmarks) import GuardPages
import Logging
@_spi(Benchmarks) import StackAllocators
import StackDiagnostics
import StackTestSupport
import Testing

/// A hugetlb cgroup limit of 0 (what Kubernetes gives a container that requests no huge pages): the pool
/// counts its pages free, and the kernel refuses every one of them to this process.
@Suite("Hugetlb cgroup limits")
struct HugeTLBCgroupTests {
    static let pageSize = 2 << 20

    @Test("Under a hugetlb cgroup limit of 0 the allocator names the limit's file, fallback still works, verify's huge-page rows skip naming it, and doctor shows it",
          needsMountPrivilege, needsHugeTLBCgroup)
    func limitOfZero() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let hierarchy = hugeTLBHierarchy()
            let name = "hugetlb.2MB." + (hierarchy.unified ? "max" : "limit_in_bytes")
            let directory: String
            do {
                directory = try makeChildCgroup(of: hierarchy, "hugetlb", settings: [(name, "0")])
            } catch {
                fail("a hugetlb cgroup of the test's own in \(hierarchy.directory): \(error)")
            }
            joinCgroup(directory)
            let file = "\(directory)/\(name)"

            let allocator = HugePageStackAllocator(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
            let huge = HugePageRequest(.anonymous, pageSize: Self.pageSize)
            do throws(StackError) {
                let stack = try allocator.allocate(StackRequest(usableSize: Self.pageSize, pages: .huge(huge)))
                fail("a hugetlb stack was granted under a limit of 0: \(stack.descriptor)")
            } catch {
                guard case .hugeTLBCgroupLimitReached(let named, let pageSize, 0, _, 1) = error.reason,
                    named == file, pageSize == Self.pageSize, error.code == .resourceExhausted
                else { fail("expected the limit in \(file) named, got \(error)") }
                ensure("\(error)".contains("raise it") && "\(error)".contains("hugepages-2Mi"), "\(error)")
            }
            var fallback = huge
            fallback.exhaustion = .fallback
            do {
                let stack = try allocator.allocate(StackRequest(usableSize: Self.pageSize, pages: .huge(fallback)))
                ensure(stack.pageSize == systemPageSize && allocator.stats.fallbacks == 1, "\(stack.descriptor), \(allocator.stats)")
            } catch {
                fail("the fallback policy threw \(error)")
            }

            var report = VerifyReport()
            HugePageChecks.run(into: &report)
            let failed = report.checks.filter { $0.status == .fail }
            ensure(failed.isEmpty, "failed rows: \(failed)")
            let anonymous = report.checks.filter { $0.allocator == "huge/anonymous-2 MiB" }
            ensure(anonymous.count == 1 && anonymous[0].status == .skip && anonymous[0].detail.contains(file), "\(anonymous)")
            // The guard-fault children of the huge-page allocator skip on the same reason.
            ensure(HugePageChecks.defaultHugeTLBMissing()?.contains(file) == true, "\(String(describing: HugePageChecks.defaultHugeTLBMissing()))")

            do {
                let doctor = try runFiberstacks(["doctor"], timeLimit: 60)
                let row = doctor.output.split(separator: "\n").first { $0.hasPrefix("huge pages 2 MiB cgroup limit") }
                ensure(doctor.status == 0 && row?.contains("0 pages (0 B), 0 in use (\(file))") == true, doctor.output + doctor.standardError)
            } catch {
                fail("fiberstacks doctor: \(error)")
            }
            joinCgroup(hierarchy.directory)
            ensure(rmdir(directory) == 0, "rmdir \(directory): errno \(errno)")
        }
    }

    @Test("The binding hugetlb limit is read per page size from cgroup v2 and v1, faults and reservations, up to the root")
    func limitsReadFromTheTree() throws {
        let tree = FakeCgroupTree()
        let root = tree.root
        func binding(_ pageSize: Int, _ memberships: String, _ mountinfo: String) -> CgroupLimit? {
            HugeTLBCgroup.binding(
                pageSize: pageSize,
                in: CgroupHierarchy.hierarchies(controller: "hugetlb", memberships: memberships, mountinfo: mountinfo))
        }
        // v2: the reservation limit one level up leaves less room than the fault limit of the process's own cgroup.
        try tree.write("v2/pod/hugetlb.2MB.rsvd.max", "8388608\n")
        try tree.write("v2/pod/hugetlb.2MB.rsvd.current", "6291456\n")
        try tree.write("v2/pod/hugetlb.2MB.max", "max\n")
        try tree.write("v2/pod/hugetlb.2MB.current", "0\n")
        try tree.write("v2/pod/app/hugetlb.2MB.max", "16777216\n")
        try tree.write("v2/pod/app/hugetlb.2MB.current", "4194304\n")
        try tree.write("v2/pod/app/hugetlb.1GB.max", "0\n")
        try tree.write("v2/pod/app/hugetlb.1GB.current", "0\n")
        let v2 = "0::/pod/app\n"
        let v2Mount = "35 24 0:30 / \(root)/v2 rw - cgroup2 cgroup2 rw\n"
        let twoMiB = binding(2 << 20, v2, v2Mount)
        #expect(twoMiB?.file == "\(root)/v2/pod/hugetlb.2MB.rsvd.max" && twoMiB?.room == 2 << 20, "\(String(describing: twoMiB))")
        let oneGiB = binding(1 << 30, v2, v2Mount)
        #expect(oneGiB?.file == "\(root)/v2/pod/app/hugetlb.1GB.max" && oneGiB?.room == 0, "\(String(describing: oneGiB))")
        #expect(binding(64 << 10, v2, v2Mount) == nil, "no file for 64 KiB pages: no limit")
        // v1: the hugetlb controller's own hierarchy; its "no limit" is a huge number.
        try tree.write("v1/hugetlb.2MB.limit_in_bytes", "9223372036854771712")
        try tree.write("v1/hugetlb.2MB.usage_in_bytes", "0")
        try tree.write("v1/job/hugetlb.2MB.limit_in_bytes", "0")
        try tree.write("v1/job/hugetlb.2MB.usage_in_bytes", "0")
        let v1 = binding(2 << 20, "9:hugetlb:/job\n4:memory:/job\n", "33 25 0:29 / \(root)/v1 rw - cgroup cgroup rw,hugetlb\n")
        #expect(v1?.file == "\(root)/v1/job/hugetlb.2MB.limit_in_bytes" && v1?.limit == 0, "\(String(describing: v1))")
        #expect(binding(2 << 20, "4:memory:/job\n", "33 25 0:29 / \(root)/v1 rw - cgroup cgroup rw,hugetlb\n") == nil,
                "a process in no hugetlb hierarchy has no hugetlb limit")
    }
}

/// For tests that set a hugetlb cgroup limit: a hugetlb hierarchy this process may make a child in, or
/// v1's hugetlb controller that a test may mount in a mount namespace of its own,
/// and a free default-size huge page (else the pool, not the limit, refuses).
let needsHugeTLBCgroup = ConditionTrait.enabled(
    if: HugePageSystem.defaultHugePageSize() == HugeTLBCgroupTests.pageSize
        && (HugePageSystem.hugePagePool(pageSize: HugeTLBCgroupTests.pageSize)?.available ?? 0) > 0
        && (writableCgroup(controller: "hugetlb") != nil || hugeTLBControllerMountable),
    "needs a free 2 MiB huge page (scripts/setup --huge-pages 64) and the hugetlb cgroup controller: a hierarchy this user may make a child in, or v1's controller in a hierarchy of its own, or in none, and enabled in no cgroup2 tree")

/// Whether the kernel has the hugetlb controller and a test may mount v1's hierarchy of it alone
/// (/proc/cgroups: bound to no hierarchy, or to one of its own, which such a mount joins); a controller
/// that a cgroup2 tree has enabled (its root's cgroup.subtree_control) cannot be.
private let hugeTLBControllerMountable: Bool = {
    guard let table = try? SystemFile.read("/proc/cgroups") else { return false }
    let rows = table.split(separator: "\n").map { $0.split(whereSeparator: \.isWhitespace) }.filter { $0.count == 4 }
    guard let hugetlb = rows.first(where: { $0[0] == "hugetlb" }), hugetlb[3] == "1",
        hugetlb[1] == "0" || !rows.contains(where: { $0[0] != "hugetlb" && $0[1] == hugetlb[1] })
    else { return false }
    let mounts = (try? SystemFile.read("/proc/self/mountinfo")) ?? ""
    return !mounts.split(separator: "\n").contains { line in
        let parts = line.split(separator: " - ", maxSplits: 1)
        guard parts.count == 2, parts[1].hasPrefix("cgroup2 ") else { return false }
        let point = parts[0].split(separator: " ")
        guard point.count >= 5 else { return false }
        let controllers = (try? SystemFile.read("\(point[4])/cgroup.subtree_control")) ?? ""
        return controllers.split(whereSeparator: \.isWhitespace).contains("hugetlb")
    }
}()

/// In an exit test's child: a hugetlb hierarchy to make a child cgroup in; where none is mounted, v1's
/// mounted in a mount namespace of the child's own, on a directory of a tmpfs of its own (over /tmp), so
/// that nothing is left behind however the child ends.
private func hugeTLBHierarchy() -> CgroupHierarchy {
    if let hierarchy = writableCgroup(controller: "hugetlb") { return hierarchy }
    hideDirectory("/tmp")
    let point = "/tmp/hugetlb"
    ensure(mkdir(point, 0o755) == 0, "mkdir \(point): errno \(errno)")
    ensure(mount("none", point, "cgroup", 0, "hugetlb") == 0, "mount -t cgroup -o hugetlb none \(point): errno \(errno)")
    guard let hierarchy = writableCgroup(controller: "hugetlb") else {
        fail("the hugetlb hierarchy mounted at \(point) is not in /proc/self/cgroup and /proc/self/mountinfo: "
            + "\((try? SystemFile.read("/proc/self/cgroup")) ?? "")\((try? SystemFile.read("/proc/self/mountinfo")) ?? "")")
    }
    return hierarchy
}
