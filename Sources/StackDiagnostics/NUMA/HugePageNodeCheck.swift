import Foundation
@_spi(Benchmarks) import GuardPages
import Logging
import StackAllocators

/// Huge-page stacks bound to a node whose per-node pool is empty: mmap and mbind succeed (the reservation
/// is global), and the first touch would die of SIGBUS. `HugePageStackAllocator` populates hugetlb stacks
/// with MADV_POPULATE_WRITE, so it is `.resourceExhausted` naming that node's pool file at allocation;
/// this check proves it, and that the same request bound to a node with pages is placed there. Needs
/// root (it resizes the per-node 2 MiB pools, then restores them).
package enum HugePageNodeCheck {
    package static let name = "huge/empty-node-pool"
    package static let pageSize = 2 << 20

    package static func run(_ context: MultiNodeChecks.Context, into report: inout NUMACheckReport) {
        let nodes = context.topology.memoryNodes
        guard nodes.count >= 2 else {
            report.skip(name, lacking: .multiNode, "needs two nodes with memory")
            return
        }
        let (full, empty) = (nodes[0], nodes[1])
        guard geteuid() == 0,
            nodes.allSatisfy({ FileManager.default.isWritableFile(atPath: poolFile($0, "nr_hugepages")) })
        else {
            report.skip(name, lacking: .machineChanges, "needs root and a writable \(poolFile(full, "nr_hugepages"))")
            return
        }
        if let limited = HugeTLBCgroup.missing(pageSize: pageSize) {
            report.skip(name, lacking: .hugetlbAnonymous, "needs a free 2 MiB huge page: \(limited)")
            return
        }
        let saved = nodes.compactMap { try? SystemFile.readInteger(poolFile($0, "nr_hugepages")) }
        guard saved.count == nodes.count else {
            report.skip(name, lacking: .machineChanges, "cannot read every node's \(poolFile(full, "nr_hugepages"))")
            return
        }
        defer { for (node, count) in zip(nodes, saved) { try? write(count, to: poolFile(node, "nr_hugepages")) } }
        report.check(name) {
            try write(2, to: poolFile(full, "nr_hugepages"))
            for node in nodes where node != full { try write(0, to: poolFile(node, "nr_hugepages")) }
            let freeFull = try SystemFile.readInteger(poolFile(full, "free_hugepages"))
            let freeEmpty = try SystemFile.readInteger(poolFile(empty, "free_hugepages"))
            guard freeFull >= 1, freeEmpty == 0 else {
                throw CheckSkipped(.machineChanges, "could not reserve a 2 MiB page on node \(full) (free: \(freeFull))")
            }
            let allocator = HugePageStackAllocator(logger: quietLogger)
            let refused = allocateBound(allocator, to: empty)
            let placed = allocateBound(allocator, to: full)
            var namesNode = false
            if case .hugePagesExhausted(_, _, _, let node, let controlFile)? = refused.error?.reason {
                namesNode = node == empty && controlFile == poolFile(empty, "nr_hugepages")
            }
            let onFull = placed.report?.pagesPerNode[full] ?? 0
            return (
                namesNode && placed.error == nil && onFull == 1,
                "node \(empty) pool empty: " + (refused.error.map { "\($0)" } ?? "no error")
                    + " (no SIGBUS); node \(full) (\(freeFull) free): "
                    + (placed.report.map { "\($0)" } ?? "\(placed.error!)"),
                ["namesNode": namesNode ? 1 : 0, "freeOnEmptyNode": freeEmpty, "freeOnFullNode": freeFull, "onFullNode": onFull]
            )
        }
    }

    /// One 2 MiB anonymous hugetlb stack bound to `node`: the error, or where its page went.
    package static func allocateBound(_ allocator: HugePageStackAllocator, to node: Int) -> (error: StackError?, report: PlacementReport?) {
        let request = StackRequest(
            usableSize: pageSize, pages: .huge(HugePageRequest(.anonymous, pageSize: pageSize)), placement: .bind(node))
        do throws(StackError) {
            let stack = try allocator.allocate(request)
            return (nil, try stack.placementReport())
        } catch {
            return (error, nil)
        }
    }

    /// The expected exhaustion is the result here, not news: log only what is critical.
    package static let quietLogger: Logger = {
        var logger = Logger(label: "fiberstacks.numa-check")
        logger.logLevel = .critical
        return logger
    }()

    package static func poolFile(_ node: Int, _ file: String) -> String {
        "/sys/devices/system/node/node\(node)/hugepages/hugepages-2048kB/\(file)"
    }

    package static func write(_ value: Int, to path: String) throws {
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CheckError(description: "cannot open \(path) for writing")
        }
        defer { try? handle.close() }
        try handle.write(contentsOf: Data("\(value)\n".utf8))
    }
}
