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

    /// The file names of the limit, the usage and the `oom_kill` count in `hierarchy`.
    package static func fileNames(in hierarchy: CgroupHierarchy) -> (limit: String, usage: String, events: String) {
        hierarchy.unified ? ("memory.max", "memory.current", "memory.events")
            : ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.oom_control")
    }

    /// The limits set on this process's cgroup in `hierarchy` and on each one above it, up to the mount.
    static func limits(in hierarchy: CgroupHierarchy) -> [MemoryCgroup] {
        let names = fileNames(in: hierarchy)
        return hierarchy.limits(names.limit, charged: names.usage).map { set in
            MemoryCgroup(
                limitFile: set.file, limit: set.limit, usage: set.usage,
                eventsFile: "\(set.directory)/\(names.events)")
        }
    }

    /// The binding limit, or nil where no memory cgroup above this process sets one (or none can be read).
    package static func current() -> MemoryCgroup? {
        binding(in: CgroupHierarchy.current(controller: "memory"))
    }

    /// Of the limits set in `hierarchies`, the one with the least room.
    package static func binding(in hierarchies: [CgroupHierarchy]) -> MemoryCgroup? {
        hierarchies.flatMap(limits(in:)).min { $0.room < $1.room }
    }
}
