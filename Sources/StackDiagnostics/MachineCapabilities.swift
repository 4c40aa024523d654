import FiberScheduler
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackAllocators

/// What this machine's kernel offers for stack memory, read from procfs and sysfs without side effects
/// (except four one-page scratch mappings, probed once per process, for the madvise advices it uses).
package struct MachineCapabilities: Sendable, Codable {
    /// `uname -r`.
    package let kernelRelease: String
    /// Base page size.
    package let pageSize: Int
    /// `MADV_GUARD_INSTALL` works.
    package let lightweightGuards: Bool
    /// `MADV_POPULATE_WRITE` works.
    package let populateWrite: Bool
    /// `MADV_DONTNEED` works: released stacks give their memory back (a seccomp profile may refuse it).
    package let discards: Bool
    /// Huge page pools, global and per node.
    package let hugePagePools: [HugePageSystem.HugePagePool]
    /// hugetlbfs mounts.
    package let hugeTLBMounts: [HugePageSystem.HugeTLBMount]
    /// The binding hugetlb cgroup limit of each huge page size that has one.
    package let hugeTLBCgroupLimits: [HugeTLBCgroup.Limit]
    /// Transparent huge page mode (`always`, `madvise`, `never`), nil if THP is absent.
    package let transparentHugePages: String?
    /// Transparent huge page defrag mode (`always`, `defer`, `defer+madvise`, `madvise`, `never`), nil if absent.
    package let transparentHugePageDefrag: String?
    /// Size of a transparent huge page (`hpage_pmd_size`), nil if THP is absent.
    package let transparentHugePageSize: Int?
    /// `MADV_HUGEPAGE` works in this process.
    package let transparentHugePageAdvice: Bool
    /// False when a parent turned transparent huge pages off for this process (prctl PR_SET_THP_DISABLE).
    package let transparentHugePagesInProcess: Bool
    /// Online NUMA node ids (`NUMATopology.onlineNodes()`).
    package let numaNodes: [Int]
    /// `vm.max_map_count`.
    package let maxMapCount: Int
    /// `vm.overcommit_memory` (0 heuristic, 1 always, 2 strict), nil when unreadable.
    package let overcommitMemory: Int?
    /// This process's mappings now.
    package let mapCount: Int
    /// CPUs this process may run on (its affinity mask); nil when sched_getaffinity is refused.
    package let cpus: Int?
    /// The CPU quota of a cgroup above this process, nil where none sets one.
    package let cpuQuota: CPUQuota?

    /// Reads everything now.
    package static func current() throws(StackError) -> MachineCapabilities {
        let nodes = NUMATopology.onlineNodes()
        var pools = HugePageSystem.globalPools()
        for node in nodes {
            pools += HugePageSystem.hugePagePools(under: "/sys/devices/system/node/node\(node)/hugepages", node: node)
        }
        return MachineCapabilities(
            kernelRelease: GuardPages.kernelRelease,
            pageSize: systemPageSize,
            lightweightGuards: GuardInstaller.lightweightGuardsSupported,
            populateWrite: Prefault.populateSupported,
            discards: StackHygiene.discards.isSupported,
            hugePagePools: pools,
            hugeTLBMounts: HugePageSystem.hugeTLBMounts(),
            hugeTLBCgroupLimits: HugePageSystem.hugePageSizes().compactMap { size in
                HugeTLBCgroup.binding(pageSize: size).map { HugeTLBCgroup.Limit(pageSize: size, limit: $0) }
            },
            transparentHugePages: HugePageSystem.transparentHugePageMode(),
            transparentHugePageDefrag: (try? SystemFile.read("\(HugePageSystem.transparentHugePageDirectory)/defrag"))
                .flatMap(bracketedChoice),
            transparentHugePageSize: HugePageSystem.transparentHugePagePMDSize(),
            transparentHugePageAdvice: HugePageSystem.transparentAdvice.isSupported,
            transparentHugePagesInProcess: HugePageSystem.transparentHugePagesDisabledInProcess() == nil,
            numaNodes: nodes,
            maxMapCount: try MapCount.limit(),
            overcommitMemory: try? SystemFile.readInteger(Overcommit.path),
            mapCount: try MapCount.current(),
            cpus: try? Syscall.processAffinity().get().count,
            cpuQuota: CPUQuota.current())
    }

}
