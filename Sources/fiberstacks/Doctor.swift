import ArgumentParser
import Foundation
@_spi(Benchmarks) import StackAllocators
@_spi(Benchmarks) import StackDiagnostics

/// `fiberstacks doctor`: prints what this machine offers for fiber stacks.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show what this kernel and machine offer for fiber stacks.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let machine = try MachineCapabilities.current()
        let numa = Result { () throws(StackError) in try NUMATopology.current() }
        let limits = HugeTLBSizeLimit.all()
        if json {
            let report = DoctorReport(machine: machine, numa: numa, hugeTLBSizeLimits: limits)
            FileStream.standardOutput.writeLine(try encodeJSON(ReportEnvelope(schemaVersion: DoctorReport.schemaVersion, report: report), snakeCase: true))
            return
        }
        func yesNo(_ value: Bool, _ detail: String) -> String { value ? "yes" : "no (\(detail))" }
        var rows: [(String, String)] = [
            ("kernel", machine.kernelRelease),
            ("page size", "\(machine.pageSize) B"),
            ("lightweight guards (MADV_GUARD_INSTALL)",
             yesNo(machine.lightweightGuards, "\(GuardInstaller.lightweightGuards.missing ?? ""); mprotect fallback")),
            ("MADV_POPULATE_WRITE", yesNo(machine.populateWrite, "\(Prefault.populateWrite.missing ?? ""); touch fallback")),
            ("MADV_DONTNEED", yesNo(machine.discards,
                "\(StackHygiene.discards.missing ?? ""); released slab stacks are zeroed in place and keep their memory")),
            ("transparent huge pages", machine.transparentHugePages.map {
                "\($0), defrag \(machine.transparentHugePageDefrag ?? "?")"
                    + (machine.transparentHugePageSize.map { ", \(formatByteCount($0)) pages" } ?? "")
                    + (machine.transparentHugePageAdvice ? "" : "; unusable: \(HugePageSystem.transparentAdvice.missing ?? "")")
                    + (machine.transparentHugePagesInProcess ? "" : "; unusable: \(HugePageSystem.transparentHugePagesDisabledInProcess() ?? "")")
            } ?? HugePageSystem.transparentHugePagesMissing),
            ("NUMA nodes (sysfs)", machine.numaNodes.isEmpty
                ? "none listed: /sys/devices/system/node/online is missing (a container may hide it)"
                : (machine.numaNodes.count == 1 ? "node " : "nodes ") + machine.numaNodes.map(String.init).joined(separator: ",")),
            ("CPUs", cpuRow(machine)),
            ("vm.max_map_count", "\(machine.maxMapCount) (this process: \(machine.mapCount) mappings)"),
            ("vm.overcommit_memory", machine.overcommitMemory.map {
                $0 == 2 ? "2 (strict: slab regions are reserved PROT_NONE, and each carved stack is charged against CommitLimit)" : "\($0)"
            } ?? "unreadable"),
        ]
        rows += numaRows(numa)
        if machine.hugePagePools.isEmpty {
            rows.append(("huge page pools", "none: " + HugePageSystem.hugePagePoolsMissing))
        } else if !HugePageSystem.sysfsListsPools {
            rows.append(("huge page pools (sysfs)", "none listed: \(HugePageSystem.hugePagePoolsMissing); the default size's "
                + "pool below is read from /proc/meminfo, other sizes are unknown"))
        }
        for pool in machine.hugePagePools {
            let scope = pool.node.map { "node \($0)" } ?? "global"
            rows.append((
                "huge pages \(formatByteCount(pool.pageSize)) \(scope)",
                "\(pool.free) free of \(pool.total)" + (pool.reserved.map { ", \($0) reserved" } ?? "")
                    + (pool.surplus > 0 ? ", \(pool.surplus) surplus" : "")
                    + (pool.overcommit.map { $0 > 0 ? ", overcommit \($0)" : "" } ?? "") + " (\(pool.controlFile))"))
        }
        for cgroup in machine.hugeTLBCgroupLimits {
            let limit = cgroup.limit
            rows.append((
                "huge pages \(formatByteCount(cgroup.pageSize)) cgroup limit",
                "\(limit.limit / cgroup.pageSize) pages (\(limit.limit) B), \(limit.usage / cgroup.pageSize) in use (\(limit.file))"
                    + (limit.room < cgroup.pageSize ? "; none left to this process, whatever the pool holds" : "")))
        }
        if machine.hugeTLBMounts.isEmpty {
            rows.append(("hugetlbfs mounts", "none (mount -t hugetlbfs none /dev/hugepages)"))
        }
        for mount in machine.hugeTLBMounts {
            let limit = limits.first { $0.path == mount.path }?.text ?? "size limit unknown"
            let access = mount.writable ? "" : ", not writable by uid \(geteuid()): libhugetlbfs ignores it"
            rows.append(("hugetlbfs mount", "\(mount.path) (\(formatByteCount(mount.pageSize)) pages, \(limit)\(access))"))
        }
        printTable(rows)
        if case .success(let topology) = numa {
            FileStream.standardOutput.writeLine("\nNUMA node distances (numa_distance; 10 is local)")
            numaDistanceMatrix(topology).forEach { FileStream.standardOutput.writeLine($0) }
        }
    }
}

/// The CPUs this process may run on, the CPU quota, and the workers a scheduler runs by default.
func cpuRow(_ machine: MachineCapabilities) -> String {
    guard let cpus = machine.cpus else { return "unknown: sched_getaffinity is refused (check seccomp profiles)" }
    guard let quota = machine.cpuQuota, quota.workers(below: cpus) != nil else {
        return "\(cpus) this process may run on, no CPU quota below that: a scheduler runs one worker on each"
    }
    return "\(cpus) this process may run on, CPU quota \(quota.cpus) CPUs (\(quota.file)): a scheduler runs \(quota.workersText)"
}

/// The NUMA section: one row per node from libnuma, or why there is none.
func numaRows(_ numa: Result<NUMATopology, StackError>) -> [(String, String)] {
    let topology: NUMATopology
    switch numa {
    case .failure(let error): return [("NUMA (libnuma)", "unavailable: \(error)")]
    case .success(let value): topology = value
    }
    let current = NUMATopology.currentNode().map(String.init) ?? "unknown"
    var rows = [(
        "NUMA (libnuma)",
        "nodes: \(topology.nodes.count), with memory: \(topology.memoryNodes.count), max node \(topology.maxNode), "
            + "this thread on node \(current)")]
    for node in topology.nodes {
        let memory = node.hasMemory
            ? "\(node.memoryTotal >> 20) MiB (\(node.memoryFree >> 20) MiB free)" : "no memory (memoryless)"
        rows.append((
            "NUMA node \(node.id)",
            "cpus \(node.cpus.isEmpty ? "none" : formatList(node.cpus)), \(memory)" + (node.online ? "" : ", offline")))
    }
    return rows
}

/// The distance matrix as `numactl -H` prints it: a header row of node ids, then one labelled row per node.
func numaDistanceMatrix(_ topology: NUMATopology) -> [String] {
    let ids = topology.nodes.map(\.id)
    let cells = topology.nodes.map { node in ids.map { node.distances[$0].map(String.init) ?? "?" } }
    let width = max(3, (cells.joined().map(\.count) + ids.map { String($0).count }).max() ?? 0) + 1
    func pad(_ text: String) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
    return ["node" + ids.map { pad(String($0)) }.joined()]
        + zip(ids, cells).map { id, row in pad("\(id):") + row.map(pad).joined() }
}

/// [0, 1, 2, 5] -> "0-2,5".
func formatList(_ values: [Int]) -> String {
    var parts: [String] = []
    var index = 0
    while index < values.count {
        var end = index
        while end + 1 < values.count, values[end + 1] == values[end] + 1 { end += 1 }
        parts.append(end == index ? "\(values[index])" : "\(values[index])-\(values[end])")
        index = end + 1
    }
    return parts.joined(separator: ",")
}

/// `doctor --json`: the machine's capabilities, `numa` (the topology) or `numa_unavailable` (why not),
/// and `hugetlbfs_size_limits` (each mount's `size_limit` in bytes, null for none).
struct DoctorReport: Encodable {
    let machine: MachineCapabilities
    let numa: Result<NUMATopology, StackError>
    let hugeTLBSizeLimits: [HugeTLBSizeLimit]

    /// The shape of the JSON (`schema_version`): raised when a key changes meaning or disappears.
    static let schemaVersion = 1

    enum CodingKeys: String, CodingKey { case numa, numaUnavailable, hugetlbfsSizeLimits }

    func encode(to encoder: Encoder) throws {
        try machine.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(hugeTLBSizeLimits, forKey: .hugetlbfsSizeLimits)
        switch numa {
        case .success(let topology): try container.encode(topology, forKey: .numa)
        case .failure(let error): try container.encode("\(error)", forKey: .numaUnavailable)
        }
    }
}

/// Two aligned columns.
func printTable(_ rows: [(String, String)]) {
    let width = rows.map(\.0.count).max() ?? 0
    for (key, value) in rows {
        FileStream.standardOutput.writeLine(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
    }
}

/// Sorted, pretty JSON; `snakeCase` turns camelCase keys into snake_case (kernelRelease: kernel_release).
func encodeJSON<T: Encodable>(_ value: T, snakeCase: Bool = false) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    if snakeCase { encoder.keyEncodingStrategy = .convertToSnakeCase }
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
