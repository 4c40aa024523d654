@_spi(Benchmarks) import GuardPages
import CStackSupport
import Foundation
@_spi(Benchmarks) import StackAllocators

/// The checks of `numa-check`: placement on every node, from threads on every other node, for each
/// placement mode, the treatment of existing pages, refused nodes, guards, and huge pages on a node
/// whose pool is empty. Meant for multi-node machines (scripts/numa-vm); on one node most of them
/// have nothing to compare and record why.
package enum MultiNodeChecks {
    package static let stackSize = 256 << 10

    /// Runs every check; `disposable` allows the two that disturb the machine (filling a node's free
    /// memory, resizing per-node huge page pools), which are otherwise skipped (capability machine-changes).
    package static func run(disposable: Bool, into report: inout NUMACheckReport) {
        let topology: NUMATopology
        let allocator: MmapStackAllocator
        do {
            topology = try NUMATopology.current()
            allocator = try MmapStackAllocator()
        } catch {
            report.add("topology", false, "error: \(error)")
            return
        }
        report.topology = topology
        let context = Context(topology: topology, allocator: allocator)
        report.add(
            "topology", !topology.memoryNodes.isEmpty && !context.cpuNodes.isEmpty,
            topology.nodes.map { node in
                "node \(node.id): cpus \(node.cpus.map(String.init).joined(separator: ",")), "
                    + "\(node.memoryTotal >> 20) MiB" + (node.hasMemory ? "" : " (memoryless)")
            }.joined(separator: "; "),
            counts: [
                "nodes": topology.nodes.count, "memoryNodes": topology.memoryNodes.count,
                "memorylessNodes": topology.nodes.filter { !$0.hasMemory }.count,
                "cpus": topology.nodes.map(\.cpus.count).reduce(0, +), "maxNode": topology.maxNode,
            ])
        pinning(context, into: &report)
        firstTouch(context, into: &report)
        bind(context, into: &report)
        preferred(context, into: &report)
        if disposable {
            preferredSpill(context, into: &report)
            HugePageNodeCheck.run(context, into: &report)
        } else {
            let reason = "needs --disposable-machine (it fills a node's memory or resizes its huge page pool)"
            report.skip("preferred-spill", lacking: .machineChanges, reason)
            report.skip(HugePageNodeCheck.name, lacking: .machineChanges, reason)
        }
        interleave(context, into: &report)
        existingPages(context, into: &report)
        refusals(context, into: &report)
        guards(context, into: &report)
        SchedulerNodeCheck.run(context, into: &report)
    }

    /// What every check needs.
    package struct Context {
        package let topology: NUMATopology
        package let allocator: MmapStackAllocator
        /// Nodes with CPUs (threads can be pinned there).
        package var cpuNodes: [Int] { topology.nodes.filter { !$0.cpus.isEmpty }.map(\.id) }
        /// Nodes with CPUs other than `node`: where a "remote" prefault runs.
        package func remoteCPUNodes(from node: Int) -> [Int] { cpuNodes.filter { $0 != node } }
    }

    /// `NUMATopology.currentNode()` agrees with the node a thread was pinned to.
    package static func pinning(_ context: Context, into report: inout NUMACheckReport) {
        for node in context.cpuNodes {
            report.check("pin/node\(node)") {
                let (current, cpu) = try onThread(pinnedTo: node) {
                    (NUMATopology.currentNode(), Int(fs_current_cpu()))
                }
                let cpus = context.topology.node(node)?.cpus ?? []
                return (
                    current == node && cpus.contains(cpu),
                    "pinned to node \(node): running on CPU \(cpu), node \(current.map(String.init) ?? "unknown")",
                    ["cpu": cpu, "node": current ?? -1]
                )
            }
        }
    }

    /// The control: without a placement, pages land on the prefaulting CPU's node (or the nearest node
    /// with memory), so the bind checks below show mbind at work, not luck.
    package static func firstTouch(_ context: Context, into report: inout NUMACheckReport) {
        for node in context.cpuNodes {
            report.check("first-touch/node\(node)") {
                let placed = try onThread(pinnedTo: node) {
                    try PlacedStack(
                        context.allocator, StackRequest(usableSize: stackSize, prefault: PrefaultPolicy(.populate)))
                }
                let hasMemory = context.topology.node(node)?.hasMemory == true
                let landed = placed.placement.pagesPerNode.keys.sorted()
                let passed =
                    hasMemory
                    ? placed.isComplete(on: [node])
                    : landed.count == 1 && context.topology.memoryNodes.contains(landed[0])
                        && placed.isComplete(on: landed)
                return (
                    passed,
                    "no placement, populated from node \(node)"
                        + (hasMemory ? "" : " (memoryless: expect one node with memory)") + ": \(placed.placement)",
                    placed.placement.counts
                )
            }
        }
    }

    /// Bound to each node with memory, prefaulted from a thread on every other node: every page there.
    package static func bind(_ context: Context, into report: inout NUMACheckReport) {
        for target in context.topology.memoryNodes {
            for (index, remote) in context.remoteCPUNodes(from: target).enumerated() {
                let strategies: [PrefaultStrategy] = index == 0 ? [.populate, .touch] : [.populate]
                for strategy in strategies {
                    report.check("bind/node\(target)/\(strategy)-from-node\(remote)") {
                        let placed = try onThread(pinnedTo: remote) {
                            try PlacedStack(
                                context.allocator,
                                StackRequest(
                                    usableSize: stackSize, prefault: PrefaultPolicy(strategy), placement: .bind(target))
                            )
                        }
                        return (
                            placed.isComplete(on: [target]) && placed.node == target,
                            "bound to node \(target), \(strategy) on node \(remote): \(placed.placement)",
                            placed.placement.counts
                        )
                    }
                }
            }
        }
    }

    /// Preferred node with room: every page there, even when prefaulted from another node.
    package static func preferred(_ context: Context, into report: inout NUMACheckReport) {
        for target in context.topology.memoryNodes {
            guard let remote = context.remoteCPUNodes(from: target).first else { continue }
            report.check("preferred/node\(target)") {
                let placed = try onThread(pinnedTo: remote) {
                    try PlacedStack(
                        context.allocator,
                        StackRequest(
                            usableSize: stackSize, prefault: PrefaultPolicy(.populate), placement: .preferred(target)))
                }
                return (
                    placed.isComplete(on: [target]) && placed.node == target,
                    "preferred node \(target), populated on node \(remote): \(placed.placement)",
                    placed.placement.counts
                )
            }
        }
    }

    /// Preferred node too small: allocation still succeeds, the overflow lands on other nodes, and
    /// `verify` reports the spill. (Bind would fail instead; that is not run: it ends in the OOM killer.)
    package static func preferredSpill(_ context: Context, into report: inout NUMACheckReport) {
        let nodes = context.topology.memoryNodes
        guard nodes.count >= 2, let target = nodes.last else {
            report.skip("preferred-spill", lacking: .multiNode, "needs two nodes with memory")
            return
        }
        report.check("preferred-spill/node\(target)") {
            let now = try NUMATopology.current()
            let free = now.node(target)?.memoryFree ?? 0
            let elsewhere = now.nodes.filter { $0.id != target }.map(\.memoryFree).reduce(0, +)
            let size = (free + (64 << 20)) & ~((2 << 20) - 1)
            guard elsewhere > 2 * (64 << 20), size <= StackSizes.maximumUsableSize else {
                throw CheckSkipped(.multiNode, "needs 128 MiB free outside node \(target) (\(elsewhere >> 20) MiB)")
            }
            let placed = try PlacedStack(
                context.allocator,
                StackRequest(
                    usableSize: size, guardSize: 0, prefault: PrefaultPolicy(.populate), placement: .preferred(target)))
            let onTarget = placed.placement.pagesPerNode[target] ?? 0
            let spilled = placed.placement.pagesOutside([target])
            var verifyRefused = false
            do throws(StackError) { try placed.placement.verify(on: [target]) } catch {
                if case .numaPlacementWrong = error.reason { verifyRefused = true }
            }
            return (
                placed.placement.present == placed.placement.pages && onTarget > 0 && spilled > 0 && verifyRefused,
                "\(size >> 20) MiB preferred on node \(target) with \(free >> 20) MiB free: \(placed.placement); "
                    + "verify(on: [\(target)]) " + (verifyRefused ? "reports the spill" : "did not report a spill"),
                placed.placement.counts.merging(["freeOnTarget": free >> 20]) { $1 }
            )
        }
    }

    /// Interleave over every node with memory: ⌊n/k⌋ or ⌈n/k⌉ pages on each.
    package static func interleave(_ context: Context, into report: inout NUMACheckReport) {
        let nodes = context.topology.memoryNodes
        guard nodes.count >= 2 else {
            report.skip("interleave", lacking: .multiNode, "needs two nodes with memory")
            return
        }
        report.check("interleave") {
            let placed = try PlacedStack(
                context.allocator,
                StackRequest(
                    usableSize: stackSize, prefault: PrefaultPolicy(.populate), placement: .interleave(nodes)))
            let pages = placed.placement.pages
            let low = pages / nodes.count
            let high = (pages + nodes.count - 1) / nodes.count
            let even = nodes.allSatisfy { (low...high).contains(placed.placement.pagesPerNode[$0] ?? 0) }
            return (
                even && placed.isComplete(on: nodes) && placed.node == nil,
                "interleaved over \(nodes.map(String.init).joined(separator: ",")): \(placed.placement) "
                    + "(expect \(low)...\(high) per node)", placed.placement.counts
            )
        }
    }

    /// Pages on node A, then a bind to node B: `.strict` fails with EIO, `.move` migrates, `.leave` leaves.
    package static func existingPages(_ context: Context, into report: inout NUMACheckReport) {
        let nodes = context.topology.memoryNodes
        guard nodes.count >= 2 else {
            report.skip("existing-pages", lacking: .multiNode, "needs two nodes with memory")
            return
        }
        let (from, to) = (nodes[0], nodes[1])
        for mode in NUMAPlacement.ExistingPages.allCases {
            report.check("existing-pages/\(mode)") {
                let stack = try context.allocator.allocate(
                    StackRequest(
                        usableSize: stackSize, prefault: PrefaultPolicy(.populate), placement: .bind(from)))
                let range = stack.descriptor.layout.usableRange
                var failure: StackError?
                do throws(StackError) {
                    try NUMABinding.apply(.bind(to, existingPages: mode), to: range)
                } catch {
                    failure = error
                }
                let after = try stack.placementReport()
                let passed: Bool
                switch mode {
                case .strict:
                    if case .numaBindFailed(.ioError, _, _, _)? = failure?.reason {
                        passed = after.pagesPerNode[from] == after.pages
                    } else {
                        passed = false
                    }
                case .move:
                    passed =
                        failure == nil && after.pagesPerNode[to] == after.pages && (try? after.verify(on: [to])) != nil
                case .leave:
                    passed =
                        failure == nil && after.pagesPerNode[from] == after.pages
                        && (try? after.verify(on: [to])) == nil
                }
                return (
                    passed,
                    "\(after.pages) pages on node \(from), then bind to node \(to) (\(mode)): "
                        + (failure.map { "error: \($0)" } ?? "accepted") + "; now \(after)",
                    after.counts.merging(["failed": failure == nil ? 0 : 1]) { $1 }
                )
            }
        }
    }

    /// Every placement that must be refused is, with its own error; for memoryless nodes the kernel
    /// agrees (mbind EINVAL without our validation).
    package static func refusals(_ context: Context, into report: inout NUMACheckReport) {
        for invalid in NUMAChecks.invalidPlacements(context.topology) {
            report.check("reject/\(invalid.name)") {
                let before = context.allocator.stats.bytesReserved
                let error = NUMAChecks.rejection(context.allocator, invalid.placement)
                return (
                    invalid.matches(error) && context.allocator.stats.bytesReserved == before,
                    "\(invalid.placement): " + (error.map { "\($0)" } ?? "accepted"), [:]
                )
            }
        }
        for node in context.topology.nodes where !node.hasMemory {
            for (name, mode) in [("bind", Int32(FS_MPOL_BIND)), ("preferred", Int32(FS_MPOL_PREFERRED))] {
                report.check("kernel-refuses/memoryless/node\(node.id)/\(name)") {
                    let page = try Syscall.map(size: systemPageSize, flags: FS_MAP_PRIVATE | FS_MAP_ANONYMOUS).get()
                    defer { _ = Syscall.unmap(page, size: systemPageSize) }
                    var mask = [UInt](repeating: 0, count: node.id / UInt.bitWidth + 1)
                    mask[node.id / UInt.bitWidth] |= 1 << UInt(node.id % UInt.bitWidth)
                    let result = Syscall.bindMemory(page, size: systemPageSize, mode: mode, nodemask: mask, flags: 0)
                    let errno: Int32 = if case .failure(let code) = result { code.rawValue } else { 0 }
                    return (
                        errno == EINVAL,
                        "raw mbind(\(name), node \(node.id)): " + (errno == 0 ? "accepted" : "errno \(errno)"),
                        ["errno": Int(errno)]
                    )
                }
            }
        }
    }

    /// Bound stacks keep sound guards with every mechanism this kernel has (mprotect where it lacks
    /// MADV_GUARD_INSTALL, as the guest's 6.1 kernel does), and no guard page is ever faulted in.
    package static func guards(_ context: Context, into report: inout NUMACheckReport) {
        guard let target = context.topology.memoryNodes.last else { return }
        var modes: [GuardMode] = [.automatic, .protNone]
        if GuardInstaller.lightweightGuardsSupported { modes.append(.lightweight) }
        for mode in modes {
            report.check("guard/\(mode)") {
                let allocator = try MmapStackAllocator(guardMode: mode)
                let placed = try PlacedStack(
                    allocator,
                    StackRequest(
                        usableSize: stackSize, prefault: PrefaultPolicy(.populate), placement: .bind(target)))
                return (
                    placed.probe.guardIsSound && placed.isComplete(on: [target]),
                    "\(mode) resolves to \(placed.mechanism); bound to node \(target): "
                        + "\(placed.probe.guardPages) guard pages, \(placed.probe.accessibleGuardPages) readable, "
                        + "\(placed.guardPlacement.present) present; \(placed.placement)",
                    placed.placement.counts.merging([
                        "guardPages": placed.probe.guardPages, "guardPresent": placed.guardPlacement.present,
                        "lightweight": placed.mechanism == .lightweight ? 1 : 0,
                    ]) { $1 }
                )
            }
        }
    }
}
