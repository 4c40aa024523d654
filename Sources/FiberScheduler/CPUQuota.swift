@_spi(Benchmarks) import GuardPages

/// The CPU time a cgroup above this process allows per period: cgroup v2's `cpu.max`, or v1's
/// `cpu.cfs_quota_us` over `cpu.cfs_period_us`. A container started with `--cpus=2` on a 64-CPU machine
/// may use every CPU but only two CPUs' worth of time: more workers than that take turns being throttled,
/// each holding its stacks.
package struct CPUQuota: Sendable, Hashable, Codable {
    /// Microseconds of CPU time allowed per period.
    package let quota: Int
    /// The period, in microseconds.
    package let period: Int
    /// The file that sets it.
    package let file: String

    /// The workers that can run at once under the quota: CPUs' worth rounded up, at least one.
    package var workers: Int { max(1, (quota + period - 1) / period) }

    /// `workers` where it is fewer than `cpus`, the default of one worker per CPU; nil where the quota
    /// leaves that default alone.
    package func workers(below cpus: Int) -> Int? { workers < cpus ? workers : nil }

    /// "1 worker", "2 workers": `workers` in words.
    package var workersText: String { workers == 1 ? "1 worker" : "\(workers) workers" }

    /// The quota in CPUs, as `docker --cpus` gives it (1.5), to the hundredth.
    package var cpus: Double { Double((quota * 100 + period / 2) / period) / 100 }

    /// The binding quota (the fewest CPUs) of the cgroups above this process, or nil where none sets one
    /// (or none can be read).
    package static func current() -> CPUQuota? {
        binding(in: CgroupHierarchy.current(controller: "cpu"))
    }

    /// Of the quotas set in `hierarchies`, the one allowing the fewest CPUs.
    package static func binding(in hierarchies: [CgroupHierarchy]) -> CPUQuota? {
        hierarchies.flatMap(quotas(in:)).min { $0.quota * $1.period < $1.quota * $0.period }
    }

    /// The quotas set on this process's cgroup in `hierarchy` and on each one above it.
    private static func quotas(in hierarchy: CgroupHierarchy) -> [CPUQuota] {
        hierarchy.directories.compactMap { directory in
            if hierarchy.unified {
                // "max 100000" sets none; "150000 100000" allows 1.5 CPUs.
                let file = "\(directory)/cpu.max"
                guard let fields = (try? SystemFile.read(file))?.split(whereSeparator: \.isWhitespace), fields.count == 2,
                    let quota = Int(fields[0]), let period = Int(fields[1])
                else { return nil }
                return valid(quota, period, file)
            }
            // -1 sets none.
            let file = "\(directory)/cpu.cfs_quota_us"
            guard let quota = CgroupHierarchy.number(in: file),
                let period = CgroupHierarchy.number(in: "\(directory)/cpu.cfs_period_us")
            else { return nil }
            return valid(quota, period, file)
        }
    }

    private static func valid(_ quota: Int, _ period: Int, _ file: String) -> CPUQuota? {
        quota > 0 && period > 0 && quota < 1 << 40 ? CPUQuota(quota: quota, period: period, file: file) : nil
    }
}
