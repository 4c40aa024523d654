import Foundation
@_spi(Benchmarks) import GuardPages
import Testing

/// This process's cgroup in a hierarchy with `controller` where it may make a child cgroup and set its
/// limits: v1's hierarchy of that controller, or v2 where the cgroup passes the controller down (root,
/// or a delegated subtree).
package func writableCgroup(controller: String) -> CgroupHierarchy? {
    CgroupHierarchy.current(controller: controller).first { hierarchy in
        guard access(hierarchy.directory, W_OK) == 0 else { return false }
        guard hierarchy.unified else { return true }
        // SystemFile, not Foundation: String(contentsOfFile:) leaks its buffer on an empty cgroup file,
        // which LeakSanitizer reports when the process exits.
        let passedDown = (try? SystemFile.read(hierarchy.directory + "/cgroup.subtree_control")) ?? ""
        return passedDown.split(whereSeparator: \.isWhitespace).contains(Substring(controller))
    }
}

/// Makes a child cgroup of this process's cgroup in `hierarchy`, named after this process and `purpose`
/// (`fiberstacks-test-PID-purpose`), writes `settings` (file, value) into it in order, and returns its
/// directory; the caller removes it with rmdir once no process is in it. First removes what test runs
/// that were killed left there: the empty cgroups named after processes that no longer exist.
package func makeChildCgroup(of hierarchy: CgroupHierarchy, _ purpose: String, settings: [(String, String)] = []) throws -> String {
    let prefix = "fiberstacks-test-"
    for name in (try? FileManager.default.contentsOfDirectory(atPath: hierarchy.directory)) ?? [] where name.hasPrefix(prefix) {
        guard let pid = pid_t(name.dropFirst(prefix.count).prefix { $0 != "-" }), kill(pid, 0) != 0, errno == ESRCH else { continue }
        _ = rmdir("\(hierarchy.directory)/\(name)")
    }
    let directory = "\(hierarchy.directory)/\(prefix)\(getpid())-\(purpose)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    do {
        for (file, value) in settings { try value.write(toFile: "\(directory)/\(file)", atomically: false, encoding: .utf8) }
    } catch {
        _ = rmdir(directory)
        throw error
    }
    return directory
}

/// The files that give a cgroup of `hierarchy` a CPU quota of one CPU, and the one that names it.
package func oneCPUQuota(in hierarchy: CgroupHierarchy) -> (settings: [(String, String)], file: String) {
    hierarchy.unified ? ([("cpu.max", "100000 100000")], "cpu.max")
        : ([("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "100000")], "cpu.cfs_quota_us")
}

/// For tests that need a CPU cgroup of their own.
package let needsCPUCgroup = ConditionTrait.enabled(
    if: writableCgroup(controller: "cpu") != nil,
    "needs a CPU cgroup this user may make a child in (root, cgroup v1 cpu or v2 with +cpu in cgroup.subtree_control)")

/// A directory tree standing in for mounted cgroup hierarchies, removed when dropped: files are written
/// by path below `root`, their directories made as needed.
package final class FakeCgroupTree {
    package let root = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-cgroups-\(UUID().uuidString)").path

    package init() {}

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// Writes `text` to `path` below `root`.
    package func write(_ path: String, _ text: String) throws {
        let file = "\(root)/\(path)"
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: false, encoding: .utf8)
    }
}

/// In an exit test's child: moves the child into the cgroup at `directory` (its cgroup.procs).
package func joinCgroup(_ directory: String) {
    let value = "\(getpid())"
    let fd = open("\(directory)/cgroup.procs", O_WRONLY)
    ensure(fd >= 0 && write(fd, value, value.utf8.count) == value.utf8.count, "joining \(directory): errno \(errno)")
    close(fd)
}
