/// A cgroup hierarchy this process is in, for one controller: cgroup v2 (one tree for every
/// controller) or the v1 hierarchy of that controller. A container's memory and CPU limits live in the
/// files of its cgroup or of one above it.
package struct CgroupHierarchy: Sendable, Hashable {
    /// Where the hierarchy is mounted.
    package let mount: String
    /// The path of this process's cgroup below `mount`, by component.
    package let components: [String]
    /// Whether this is cgroup v2, whose files are named otherwise (`memory.max`, `cpu.max`).
    package let unified: Bool

    /// The directory of this process's own cgroup.
    package var directory: String { ([mount] + components).joined(separator: "/") }

    /// This process's cgroup directory and each one above it, up to the mount, innermost first: a limit
    /// set on any of them applies.
    package var directories: [String] {
        (0...components.count).reversed().map { ([mount] + components.prefix($0)).joined(separator: "/") }
    }

    /// The hierarchies of this process that have `controller` (/proc/thread-self/cgroup and mountinfo:
    /// the mounts the calling thread resolves paths in, which a thread that unshared its mount namespace
    /// does not share with the process's first thread); empty where neither can be read.
    package static func current(controller: String) -> [CgroupHierarchy] {
        guard let memberships = try? SystemFile.read("/proc/thread-self/cgroup"),
            let mounts = try? SystemFile.read("/proc/thread-self/mountinfo")
        else { return [] }
        return hierarchies(controller: controller, memberships: memberships, mountinfo: mounts)
    }

    /// The hierarchies that `memberships` (as /proc/self/cgroup reads) names and `mountinfo` (as
    /// /proc/self/mountinfo reads) mounts: the v2 tree, and v1's hierarchy of `controller`.
    package static func hierarchies(controller: String, memberships: String, mountinfo mounts: String) -> [CgroupHierarchy] {
        memberships.split(separator: "\n").compactMap { line -> CgroupHierarchy? in
            // "0::/path" (v2) or "4:memory:/path" (v1; the controllers may be comma-joined).
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { return nil }
            let path = String(fields[2])
            if fields[0] == "0", fields[1].isEmpty, let mount = mountPoint(in: mounts, type: "cgroup2", controller: nil) {
                return hierarchy(mount, path, unified: true)
            }
            guard fields[1].split(separator: ",").contains(Substring(controller)),
                let mount = mountPoint(in: mounts, type: "cgroup", controller: controller)
            else { return nil }
            return hierarchy(mount, path, unified: false)
        }
    }

    /// The number a one-value cgroup file holds; nil when it cannot be read or holds "max".
    package static func number(in file: String) -> Int? {
        (try? SystemFile.read(file)).flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } }
    }

    /// The limits that the file named `limitFile` sets on this process's cgroup and on each one above it,
    /// innermost first, each with what `usageFile` beside it says is charged. "max" (v2) or a number of
    /// 2^60 or more (v1's "no limit") sets none.
    package func limits(_ limitFile: String, charged usageFile: String) -> [CgroupLimit] {
        directories.compactMap { directory in
            guard let limit = Self.number(in: "\(directory)/\(limitFile)"), limit < 1 << 60,
                let usage = Self.number(in: "\(directory)/\(usageFile)")
            else { return nil }
            return CgroupLimit(directory: directory, name: limitFile, limit: limit, usage: usage)
        }
    }

    private static func hierarchy(_ mount: (directory: String, root: String), _ path: String, unified: Bool) -> CgroupHierarchy? {
        // A container may see only its own subtree: the mount's root is then the path or one above it.
        let root = mount.root.split(separator: "/")
        let all = path.split(separator: "/")
        guard all.starts(with: root) else { return nil }
        return CgroupHierarchy(mount: mount.directory, components: all.dropFirst(root.count).map(String.init), unified: unified)
    }

    /// Where a cgroup hierarchy is mounted, and the cgroup path its mount point shows.
    private static func mountPoint(in mountinfo: String, type: String, controller: String?) -> (directory: String, root: String)? {
        for line in mountinfo.split(separator: "\n") {
            // id parent dev root mountpoint options [optional...] - type source superoptions
            let parts = line.split(separator: " - ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let before = parts[0].split(separator: " ")
            let after = parts[1].split(separator: " ")
            guard before.count >= 5, after.count >= 3, after[0] == type else { continue }
            if let controller, !after[2].split(separator: ",").contains(Substring(controller)) { continue }
            return (String(before[4]), String(before[3]))
        }
        return nil
    }
}

/// A limit one cgroup sets: the file that sets it, the limit and what is charged against it now.
package struct CgroupLimit: Sendable, Codable, Hashable {
    /// The cgroup's directory.
    package let directory: String
    /// The name of the file that sets the limit (`memory.max`, `hugetlb.2MB.limit_in_bytes`, …).
    package let name: String
    /// The limit.
    package let limit: Int
    /// What is charged now.
    package let usage: Int

    /// The file that sets the limit.
    package var file: String { "\(directory)/\(name)" }
    /// What may still be charged.
    package var room: Int { max(0, limit - usage) }
}
