import CNuma
import CStackSupport
import Glibc
@_spi(Benchmarks) import GuardPages
import SystemPackage

/// The machine's NUMA nodes as libnuma and sysfs report them: which exist, which are online, which have
/// memory, their CPUs, memory and distances.
///
/// Memoryless nodes exist (CPUs, no memory; nothing can be placed on them), and so do CPU-less memory
/// nodes: `memoryNodes` lists the nodes a placement may name.
public struct NUMATopology: Sendable, Hashable, Codable {
    /// One node.
    public struct Node: Sendable, Hashable, Codable {
        /// The node id.
        public let id: Int
        /// Listed in /sys/devices/system/node/online.
        package let online: Bool
        /// Has memory (`numa_node_size64` > 0): pages can be placed on it.
        public let hasMemory: Bool
        /// Its CPUs (`numa_node_to_cpus`); empty for a CPU-less memory node.
        public let cpus: [Int]
        /// Memory in bytes (`numa_node_size64`).
        package let memoryTotal: Int
        /// Free memory in bytes when the topology was read.
        package let memoryFree: Int
        /// `numa_distance` to each node of the topology, by node id (10 is local; 0 unknown).
        package let distances: [Int: Int]
    }

    /// Node ids this kernel can ever have (/sys/devices/system/node/possible).
    package let possible: [Int]
    /// The highest node id present (`numa_max_node()`).
    package let maxNode: Int
    /// The nodes present (libnuma's configured nodes), by id.
    public let nodes: [Node]

    /// Ids of the nodes with memory.
    public var memoryNodes: [Int] { nodes.filter(\.hasMemory).map(\.id) }

    /// The node with `id`, if present.
    package func node(_ id: Int) -> Node? { nodes.first { $0.id == id } }

    /// The node with memory closest to `id` by `numa_distance` (itself when it has memory).
    package func nearestMemoryNode(to id: Int) -> Int? {
        let distances = node(id)?.distances ?? [:]
        return nodes.filter(\.hasMemory).min { a, b in
            (distances[a.id] ?? Int.max, a.id) < (distances[b.id] ?? Int.max, b.id)
        }?.id
    }

    /// Throws the error that says why no page can be placed on `id`: out of range, offline, memoryless.
    package func validateMemoryNode(_ id: Int) throws(StackError) {
        guard possible.contains(id) else {
            throw .numaNodeOutOfRange(node: id, possible: possible)
        }
        guard let node = node(id), node.online else {
            throw .numaNodeOffline(node: id, online: nodes.filter(\.online).map(\.id))
        }
        guard node.hasMemory else {
            throw .numaNodeMemoryless(node: id, nearest: nearestMemoryNode(to: id))
        }
    }

    /// Whether libnuma works on this machine: `numa_available() >= 0`, and it finds a node, which it does
    /// not where /sys/devices/system/node is hidden (some containers) although the syscalls work.
    @_spi(Benchmarks) public static var available: Bool { unavailableError == nil }

    /// Why libnuma does not work here, naming the one cause found, or nil.
    private static let unavailableError: StackError? = {
        // numa_available() is get_mempolicy(2), but some libnuma versions fail it for ENOSYS only: a seccomp
        // profile's EPERM would pass. The call itself, made here too, decides, and its errno says why.
        guard numa_available() >= 0, get_mempolicy(nil, nil, 0, nil, 0) == 0 else {
            let code = errno
            guard code != ENOSYS else {
                return .capabilityMissing("NUMA (get_mempolicy: ENOSYS)", fix: "a kernel built with CONFIG_NUMA=y")
            }
            return .capabilityMissing(
                "NUMA (get_mempolicy: \(Errno(rawValue: code)))",
                fix: "a seccomp profile that allows get_mempolicy, set_mempolicy, mbind and move_pages")
        }
        let maxNode = numa_max_node()
        guard maxNode >= 0 && (0...maxNode).contains(where: { fs_numa_node_configured($0) != 0 }) else {
            return .capabilityMissing(
                "NUMA (libnuma finds no node in /sys/devices/system/node)",
                fix: Sysfs.missing("/sys/devices/system/node", kernelNeeds: "CONFIG_NUMA=y"))
        }
        return nil
    }()

    /// Reads the topology now. Throws `.unsupported` when libnuma is unusable (`available`).
    public static func current() throws(StackError) -> NUMATopology {
        if let unavailableError { throw unavailableError }
        // libnuma fills its cpumask and distance caches without locks: one reader at a time.
        return libnumaLock.withLock { _ in read() }
    }

    /// The topology read once per process, for validating placements cheaply on every allocation.
    /// Nodes that change later (memory hotplug) are still caught: the kernel refuses them with EINVAL.
    static let cached: Result<NUMATopology, StackError> = {
        do throws(StackError) { return .success(try current()) } catch { return .failure(error) }
    }()

    /// The node of the CPU the calling thread runs on now (`numa_node_of_cpu(sched_getcpu())`), nil when
    /// libnuma is unavailable or the CPU is unknown. The thread may migrate right after.
    public static func currentNode() -> Int? {
        guard available else { return nil }
        let cpu = fs_current_cpu()
        guard cpu >= 0 else { return nil }
        let node = numa_node_of_cpu(cpu)
        return node >= 0 ? Int(node) : nil
    }

    /// The online node ids (/sys/devices/system/node/online), without libnuma; empty where sysfs has no
    /// node information (some containers).
    package static func onlineNodes() -> [Int] {
        (try? SystemFile.read("/sys/devices/system/node/online")).map(parseCPUList) ?? []
    }

    /// The CPUs of each online node (/sys/devices/system/node/nodeN/cpulist), without libnuma; nodes whose
    /// list cannot be read are left out.
    package static func onlineNodeCPUs() -> [(node: Int, cpus: [Int])] {
        onlineNodes().compactMap { id in
            (try? SystemFile.read("/sys/devices/system/node/node\(id)/cpulist")).map { (id, parseCPUList($0)) }
        }
    }

    private static let libnumaLock = Lock(())

    private static func read() -> NUMATopology {
        let maxNode = Int(numa_max_node())
        let online = Set(onlineNodes())
        let possible =
            (try? SystemFile.read("/sys/devices/system/node/possible")).map(parseCPUList)
            ?? Array(0...maxNode)
        let ids = (0...maxNode).filter { fs_numa_node_configured(Int32($0)) != 0 }
        let cpuCount = Int(numa_num_possible_cpus())
        let mask = numa_allocate_cpumask()
        defer { numa_bitmask_free(mask) }
        let nodes = ids.map { id -> Node in
            var free: Int64 = 0
            let total = numa_node_size64(Int32(id), &free)
            var cpus: [Int] = []
            if numa_node_to_cpus(Int32(id), mask) == 0 {
                cpus = (0..<cpuCount).filter { numa_bitmask_isbitset(mask, UInt32($0)) != 0 }
            }
            var distances: [Int: Int] = [:]
            for other in ids { distances[other] = Int(numa_distance(Int32(id), Int32(other))) }
            return Node(
                id: id, online: online.contains(id), hasMemory: total > 0, cpus: cpus,
                memoryTotal: max(Int(total), 0), memoryFree: total > 0 ? Int(free) : 0, distances: distances)
        }
        return NUMATopology(possible: possible, maxNode: maxNode, nodes: nodes)
    }
}
