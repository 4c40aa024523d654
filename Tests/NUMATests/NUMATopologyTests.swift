@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackAllocators
import Testing

@Suite("NUMA topology on this host")
struct NUMATopologyTests {
    @Test(
        "libnuma's view matches sysfs: nodes, memory, CPUs, local distance, the current node",
        .enabled(
            if: NUMATopology.available, "needs libnuma working here (numa_available() >= 0: a kernel with CONFIG_NUMA)")
    )
    func current() throws {
        let topology = try NUMATopology.current()
        #expect(!topology.nodes.isEmpty)
        #expect(topology.nodes.map(\.id) == topology.nodes.map(\.id).sorted())
        #expect(topology.maxNode == topology.nodes.last?.id)
        #expect(topology.nodes.allSatisfy { topology.possible.contains($0.id) })
        // Each CPU belongs to exactly one node.
        let cpus = topology.nodes.flatMap(\.cpus)
        #expect(Set(cpus).count == cpus.count)
        #expect(!cpus.isEmpty)
        // sysfs, read independently, agrees on which nodes are online and which have memory.
        let online = parseCPUList(try SystemFile.read("/sys/devices/system/node/online"))
        let withMemory = parseCPUList(try SystemFile.read("/sys/devices/system/node/has_memory"))
        #expect(topology.nodes.filter(\.online).map(\.id) == online)
        #expect(topology.memoryNodes == withMemory)
        for node in topology.nodes {
            #expect(node.distances[node.id] == 10, "node \(node.id): \(node.distances)")
            #expect(node.distances.count == topology.nodes.count)
            if node.hasMemory {
                #expect(node.memoryTotal > 0 && node.memoryFree <= node.memoryTotal)
            } else {
                #expect(node.memoryTotal == 0)
            }
        }
        let current = try #require(NUMATopology.currentNode())
        #expect(topology.node(current) != nil)
    }

    @Test(
        "The nearest node with memory is the node itself when it has memory",
        .enabled(if: NUMATopology.available, "needs libnuma working here (numa_available() >= 0)"))
    func nearest() throws {
        let topology = try NUMATopology.current()
        for node in topology.memoryNodes {
            #expect(topology.nearestMemoryNode(to: node) == node)
        }
        #expect(topology.nearestMemoryNode(to: -1) != nil || topology.memoryNodes.isEmpty)
    }
}
