@_spi(Benchmarks) import GuardPages

/// The memory limit this process lives under: of all the memory cgroups above it (cgroup v2, or v1's
/// memory controller) that set one, the one with the least room. Past it the kernel reclaims, then its
/// OOM killer ends a process with SIGKILL, which a container's limit makes far smaller than MemAvailable.
package struct MemoryCgroup: Sendable {
    /// The file that sets the limit (`memory.max`, or v1's `memory.limit_in_bytes`).
    package let limitFile: String
    /// The limit, in bytes.
    package let limit: Int
    /// Bytes charged to that cgroup now (`memory.current`, or v1's `memory.usage_in_bytes`).
    package let usage: Int
    /// The file whose `oom_kill` line counts the processes killed there (`memory.events`, or v1's
    /// `memory.oom_control`).
    package let eventsFile: String

    /// Bytes this process and its cgroup may still charge.
    package var room: Int { max(0, limit - usage) }

    /// Processes the OOM killer has ended in this cgroup so far; nil when the kernel does not count them.
    package var oomKills: Int? {
        guard let events = try? SystemFile.read(eventsFile) else { return nil }
        return events.split(separator: "\n").first { $0.hasPrefix("oom_kill ") }
            .flatMap { Int($0.dropFirst("oom_kill ".count)) }
    }

    /// A memory cgroup hierarchy this process belongs to: cgroup v2, or v1's memory controller.
    package struct Hierarchy: Sendable {
        /// Where the hierarchy is mounted.
        let mount: String
        /// The path of this process's cgroup below `mount`, by component.
        let components: [String]
        /// Names of the files that hold the limit, the usage and the `oom_kill` count.
        package let limitName: String
        let usageName: String
        let eventsName: String

        /// The directory of this process's own cgroup.
        package var directory: String { ([mount] + components).joined(separator: "/") }

        /// The limits set on this process's cgroup and on each one above it, up to the mount.
        var limits: [MemoryCgroup] {
            var components = components
            var found: [MemoryCgroup] = []
            while true {
                let directory = ([mount] + components).joined(separator: "/")
                // "max" (v2) or a huge number (v1's "no limit": PAGE_COUNTER_MAX pages) set none.
                if let limit = number(in: "\(directory)/\(limitName)"), limit < 1 << 60,
                    let usage = number(in: "\(directory)/\(usageName)")
                {
                    found.append(MemoryCgroup(
                        limitFile: "\(directory)/\(limitName)", limit: limit, usage: usage,
                        eventsFile: "\(directory)/\(eventsName)"))
                }
                guard !components.isEmpty else { return found }
                components.removeLast()
            }
        }
    }

    /// The binding limit, or nil where no memory cgroup above this process sets one (or none can be read).
    package static func current() -> MemoryCgroup? {
        binding(in: hierarchies())
    }

    /// Of the limits set in `hierarchies`, the one with the least room.
    package static func binding(in hierarchies: [Hierarchy]) -> MemoryCgroup? {
        hierarchies.flatMap(\.limits).min { $0.room < $1.room }
    }

    /// The memory cgroup hierarchies this process is in (/proc/self/cgroup), where they are mounted
    /// (/proc/self/mountinfo).
    package static func hierarchies() -> [Hierarchy] {
        guard let memberships = try? SystemFile.read("/proc/self/cgroup"),
            let mounts = try? SystemFile.read("/proc/self/mountinfo")
        else { return [] }
        return hierarchies(memberships: memberships, mountinfo: mounts)
    }

    /// The memory cgroup hierarchies that `memberships` (as /proc/self/cgroup reads) names, where
    /// `mountinfo` (as /proc/self/mountinfo reads) mounts them.
    package static func hierarchies(memberships: String, mountinfo mounts: String) -> [Hierarchy] {
        memberships.split(separator: "\n").compactMap { line -> Hierarchy? in
            // "0::/path" (v2) or "4:memory:/path" (v1; the controllers may be comma-joined).
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { return nil }
            let path = String(fields[2])
            if fields[0] == "0", fields[1].isEmpty, let mount = mountPoint(in: mounts, type: "cgroup2", controller: nil) {
                return hierarchy(mount, path, limit: "memory.max", usage: "memory.current", events: "memory.events")
            }
            guard fields[1].split(separator: ",").contains("memory"),
                let mount = mountPoint(in: mounts, type: "cgroup", controller: "memory")
            else { return nil }
            return hierarchy(mount, path, limit: "memory.limit_in_bytes", usage: "memory.usage_in_bytes", events: "memory.oom_control")
        }
    }

    private static func hierarchy(
        _ mount: (directory: String, root: String), _ path: String, limit: String, usage: String, events: String
    ) -> Hierarchy? {
        // A container may see only its own subtree: the mount's root is then the path or one above it.
        let root = mount.root.split(separator: "/")
        let all = path.split(separator: "/")
        guard all.starts(with: root) else { return nil }
        let components = all.dropFirst(root.count).map(String.init)
        return Hierarchy(
            mount: mount.directory, components: components, limitName: limit, usageName: usage, eventsName: events)
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

    /// The number a one-value cgroup file holds; nil when it cannot be read or holds "max".
    private static func number(in file: String) -> Int? {
        (try? SystemFile.read(file)).flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } }
    }
}
