import CStackSupport
import Foundation
import Logging
import StackAllocators

/// Huge pages bound to a node whose per-node pool is empty: mmap and mbind succeed (the reservation is
/// global), and the first touch would die of SIGBUS. Prefault with MADV_POPULATE_WRITE turns it into an
/// error at allocation time; this check proves it, and that the same mapping bound to a node with pages
/// is placed there. Needs root (it resizes the per-node 2 MiB pools, then restores them).
enum HugePageNodeCheck {
    static let name = "huge/empty-node-pool"
    static let pageSize = 2 << 20

    static func run(_ context: MultiNodeChecks.Context, into report: inout NUMACheckReport) {
        let nodes = context.topology.memoryNodes
        guard nodes.count >= 2 else {
            report.add(name, true, "skipped: needs two nodes with memory")
            return
        }
        let (full, empty) = (nodes[0], nodes[1])
        guard geteuid() == 0,
            nodes.allSatisfy({ FileManager.default.isWritableFile(atPath: poolFile($0, "nr_hugepages")) })
        else {
            report.add(name, true, "skipped: needs root and a writable \(poolFile(full, "nr_hugepages"))")
            return
        }
        let saved = nodes.compactMap { try? SystemFile.readInteger(poolFile($0, "nr_hugepages")) }
        guard saved.count == nodes.count else {
            report.add(name, true, "skipped: cannot read every node's \(poolFile(full, "nr_hugepages"))")
            return
        }
        defer { for (node, count) in zip(nodes, saved) { try? write(count, to: poolFile(node, "nr_hugepages")) } }
        report.check(name) {
            try write(2, to: poolFile(full, "nr_hugepages"))
            for node in nodes where node != full { try write(0, to: poolFile(node, "nr_hugepages")) }
            let freeFull = try SystemFile.readInteger(poolFile(full, "free_hugepages"))
            let freeEmpty = try SystemFile.readInteger(poolFile(empty, "free_hugepages"))
            guard freeFull >= 1, freeEmpty == 0 else {
                return (true, "skipped: could not reserve a 2 MiB page on node \(full) (free: \(freeFull))", [:])
            }
            let refused = try populateBound(to: empty)
            let placed = try populateBound(to: full)
            var errno = 0
            if case .prefaultFailed(let code, _, _)? = refused.error { errno = Int(code.rawValue) }
            let onFull = placed.report?.pagesPerNode[full] ?? 0
            return (
                refused.error != nil && errno != 0 && placed.error == nil && onFull == 1,
                "node \(empty) pool empty: bind + populate gave " + (refused.error.map { "\($0)" } ?? "no error")
                    + " (no SIGBUS); node \(full) (\(freeFull) free): "
                    + (placed.report.map { "\($0)" } ?? "\(placed.error!)"),
                ["errno": errno, "freeOnEmptyNode": freeEmpty, "freeOnFullNode": freeFull, "onFullNode": onFull]
            )
        }
    }

    /// One private anonymous 2 MiB hugetlb page bound to `node`, then populated: the error, or where it went.
    static func populateBound(to node: Int) throws(StackError) -> (error: StackError?, report: PlacementReport?) {
        let flags = FS_MAP_PRIVATE | FS_MAP_ANONYMOUS | FS_MAP_HUGETLB | Int32(21 << FS_MAP_HUGE_SHIFT)
        let base: UInt
        switch Syscall.map(size: pageSize, flags: flags) {
        case .success(let address): base = address
        case .failure(let errno): throw .mappingFailed(errno, size: pageSize)
        }
        defer { _ = Syscall.unmap(base, size: pageSize) }
        let layout = try StackLayout(base: base, sizes: try StackSizes(usable: pageSize, guard: 0, pageSize: pageSize))
        do {
            try NUMABinding.apply(.bind(node), to: layout.usableRange)
            try Prefault.apply(PrefaultPolicy(.populate), to: layout, logger: quietLogger)
        } catch {
            return (error, nil)
        }
        return (nil, try PlacementReport(range: layout.usableRange, pageSize: pageSize))
    }

    /// The expected prefault failure is the result here, not news: log only what is critical.
    static let quietLogger: Logger = {
        var logger = Logger(label: "fiberstacks.numa-check")
        logger.logLevel = .critical
        return logger
    }()

    static func poolFile(_ node: Int, _ file: String) -> String {
        "/sys/devices/system/node/node\(node)/hugepages/hugepages-2048kB/\(file)"
    }

    static func write(_ value: Int, to path: String) throws {
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CheckError(description: "cannot open \(path) for writing")
        }
        defer { try? handle.close() }
        try handle.write(contentsOf: Data("\(value)\n".utf8))
    }
}
