import Glibc
import StackAllocators

/// The multi-node checks of `numa-check`, as rows of `verify`, where the machine has two or more NUMA
/// nodes with memory. The checks that change the machine run only with `allowMachineChanges` as root.
package enum MultiNodeVerify {
    package static let allocatorName = "numa/multi-node"
    /// All multi-node checks together; in a TCG guest they take a few seconds.
    package static let timeLimit = 300.0

    package static func run(allowMachineChanges: Bool, into report: inout VerifyReport) {
        let topology: NUMATopology
        do {
            topology = try NUMATopology.current()
        } catch {
            report.skip("multi-node", allocatorName, lacking: .multiNode, "the NUMA topology is unreadable: \(error)")
            return
        }
        guard topology.memoryNodes.count >= 2 else {
            report.skip("multi-node", allocatorName, lacking: .multiNode,
                        "needs two NUMA nodes with memory; this machine has \(topology.memoryNodes.count) (numactl -H)")
            return
        }
        let disposable = allowMachineChanges && geteuid() == 0
        var numa = NUMACheckReport()
        report.observer?.willStart(name: "multi-node", allocator: allocatorName, timeLimit: timeLimit)
        MultiNodeChecks.run(disposable: disposable, into: &numa)
        for check in numa.checks {
            if let capability = check.capability {
                report.skip(check.name, allocatorName, lacking: capability, capability == .machineChanges && !disposable
                    ? "needs --allow-machine-changes, as root (it fills a node's memory or resizes its huge page pool)" : check.detail)
            } else {
                report.add(check.name, allocatorName, check.status == .pass, check.detail)
            }
        }
    }
}
