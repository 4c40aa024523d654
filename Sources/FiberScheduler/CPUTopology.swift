import Glibc
@_spi(Benchmarks) import GuardPages
import Logging
import StackAllocators

/// The CPUs this process may run on, grouped by NUMA node, and where each worker goes.
///
/// `current()` reads the nodes' CPUs through `NUMATopology` (sysfs, without libnuma) and the process's
/// affinity mask. The type is plain data, so a libnuma-backed source (or a test) can build one with
/// `init(nodes:)` and hand it to `FiberConfig.topology`.
package struct CPUTopology: Sendable, Hashable, Codable {
    /// One NUMA node and the CPUs of it this process may use.
    package struct Node: Sendable, Hashable, Codable {
        /// The node id (as in `/sys/devices/system/node/nodeN`).
        package let id: Int
        /// Usable CPU ids on the node, ascending.
        package let cpus: [Int]

        /// A node with its CPUs.
        package init(id: Int, cpus: [Int]) {
            self.id = id
            self.cpus = cpus.sorted()
        }
    }

    /// Where one worker runs.
    package struct Placement: Sendable, Hashable, Codable {
        /// The CPU the worker is pinned to (when pinning is on).
        package let cpu: Int
        /// The NUMA node of that CPU: the worker's allocator and its stacks' pages belong to it.
        package let node: Int
    }

    /// Nodes that have at least one usable CPU, by id.
    package let nodes: [Node]

    /// A topology from explicit nodes (nodes without CPUs are dropped).
    package init(nodes: [Node]) {
        self.nodes = nodes.filter { !$0.cpus.isEmpty }.sorted { $0.id < $1.id }
    }

    /// Every usable CPU, by node then id.
    package var cpus: [Int] { nodes.flatMap(\.cpus) }

    /// The node of `cpu`, or nil when it is not usable.
    package func node(ofCPU cpu: Int) -> Int? {
        nodes.first { $0.cpus.contains(cpu) }?.id
    }

    /// Places `count` workers: workers are spread over the nodes in proportion to their CPUs, and listed
    /// grouped by node (node 0's workers first); past one worker per CPU, CPUs are reused in order.
    package func placements(workers count: Int) -> [Placement] {
        let all = nodes.flatMap { node in node.cpus.map { Placement(cpu: $0, node: node.id) } }
        guard !all.isEmpty, count > 0 else { return [] }
        // Interleave the nodes (one CPU of each in turn) so that fewer workers than CPUs still cover every
        // node, then group the chosen placements by node so neighbours share a node.
        var interleaved: [Placement] = []
        let longest = nodes.map(\.cpus.count).max() ?? 0
        for index in 0..<longest {
            for node in nodes where index < node.cpus.count {
                interleaved.append(Placement(cpu: node.cpus[index], node: node.id))
            }
        }
        let chosen = (0..<count).map { interleaved[$0 % interleaved.count] }
        return chosen.enumerated().sorted { ($0.element.node, $0.offset) < ($1.element.node, $1.offset) }.map(\.element)
    }

    /// This machine's topology: the online nodes from sysfs, each with the CPUs of the process's
    /// affinity mask (its main thread's: `taskset`, cgroup cpusets). Without sysfs node information
    /// (some containers) it is one node 0 holding every allowed CPU, logged at `info`. Where a seccomp
    /// profile refuses sched_getaffinity, every online CPU counts as allowed, logged as a warning (a worker
    /// that cannot be pinned runs unpinned).
    package static func current(logger: Logger = Logger(label: "fiberstacks.topology")) throws(StackError) -> CPUTopology {
        let allowed: Set<Int>
        switch Syscall.processAffinity() {
        case .success(let cpus): allowed = Set(cpus)
        case .failure(let errno):
            let online = (try? SystemFile.read("/sys/devices/system/cpu/online")).map(parseCPUList) ?? []
            let cpus = online.isEmpty ? Array(0..<max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))) : online
            logger.warning(
                "sched_getaffinity is refused: every online CPU is taken as one this process may run on",
                metadata: ["errno": "\(errno)", "cpus": "\(cpus)", "fix": "allow sched_getaffinity in the seccomp profile"])
            allowed = Set(cpus)
        }
        let nodes = NUMATopology.onlineNodeCPUs().map { Node(id: $0.node, cpus: $0.cpus.filter(allowed.contains)) }
        let placed = Set(nodes.flatMap(\.cpus))
        if placed.isEmpty {
            logger.info(
                "no NUMA node information in /sys/devices/system/node; treating all CPUs as node 0",
                metadata: ["cpus": "\(allowed.sorted())"])
            return CPUTopology(nodes: [Node(id: 0, cpus: Array(allowed))])
        }
        let orphans = allowed.subtracting(placed)
        if !orphans.isEmpty {
            logger.info("CPUs without a NUMA node in sysfs are left unused", metadata: ["cpus": "\(orphans.sorted())"])
        }
        return CPUTopology(nodes: nodes)
    }
}
