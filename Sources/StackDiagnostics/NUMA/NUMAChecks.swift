@_spi(Benchmarks) import GuardPages
import CNuma
import StackAllocators

/// `verify` for NUMA placement: on every node with memory, a stack bound to it and prefaulted has every
/// page there (move_pages says so) and the kernel holds MPOL_BIND to that node for it (get_mempolicy);
/// a control stack with no placement, prefaulted from another node's CPU where there is one, holds
/// MPOL_DEFAULT, so a bind that did nothing fails even on one node. Nodes that cannot take pages are
/// refused with their own errors.
package enum NUMAChecks {
    package static let allocatorName = "mmap+numa"
    /// The stack size of the placement checks.
    package static let stackSize = 256 << 10

    package static func run(into report: inout VerifyReport) {
        let topology: NUMATopology
        do {
            topology = try NUMATopology.current()
        } catch {
            report.skip("numa", allocatorName, lacking: .numa, "\(error)")
            return
        }
        let allocator: MmapStackAllocator
        do {
            allocator = try MmapStackAllocator()
        } catch {
            report.add("create", allocatorName, false, "error: \(error)")
            return
        }
        for node in topology.memoryNodes {
            report.check("bind-node\(node)", allocatorName) {
                let placed = try PlacedStack(
                    allocator,
                    StackRequest(usableSize: stackSize, prefault: PrefaultPolicy(.populate), placement: .bind(node)))
                let control = try controlStack(allocator, topology: topology, awayFrom: node)
                let bound = MemoryPolicy(mode: Int32(MPOL_BIND), nodes: [node])
                let unbound = MemoryPolicy(mode: Int32(MPOL_DEFAULT), nodes: [])
                // With several nodes, the control's pages must land elsewhere: the bind moved them.
                let controlElsewhere = control.remote == nil || control.placed.placement.pagesOutside([node]) > 0
                let passed = placed.isComplete(on: [node]) && placed.node == node && placed.policy == bound
                    && control.placed.policy == unbound && controlElsewhere
                return (passed, "bound to node \(node), populated: \(placed.placement), kernel policy \(placed.policy); "
                    + "control (no placement, populated on \(control.remote.map { "node \($0)" } ?? "this thread")): "
                    + "\(control.placed.placement), kernel policy \(control.placed.policy)")
            }
        }
        report.check("invalid-nodes-rejected", allocatorName) {
            let outcomes = invalidPlacements(topology).map {
                ($0.placement, $0.matches(rejection(allocator, $0.placement)))
            }
            let failed = outcomes.filter { !$0.1 }.map { "\($0.0)" }
            return (
                failed.isEmpty && allocator.stats.bytesReserved == 0,
                "\(outcomes.count) invalid placements refused with their errors, nothing left mapped"
                    + (failed.isEmpty ? "" : "; wrong outcome for: \(failed.joined(separator: "; "))")
            )
        }
    }

    /// A stack with no placement, populated from a thread on a node with CPUs other than `node` when
    /// there is one (`remote`), else on this thread.
    package static func controlStack(_ allocator: MmapStackAllocator, topology: NUMATopology, awayFrom node: Int) throws
        -> (placed: PlacedStack, remote: Int?)
    {
        let request = StackRequest(usableSize: stackSize, prefault: PrefaultPolicy(.populate))
        guard let remote = topology.nodes.first(where: { $0.id != node && !$0.cpus.isEmpty && $0.hasMemory })?.id else {
            return (try PlacedStack(allocator, request), nil)
        }
        return (try onThread(pinnedTo: remote) { try PlacedStack(allocator, request) }, remote)
    }

    /// A placement no allocation may accept on this machine, and the error it must get.
    package struct InvalidPlacement {
        /// A short stable name: `out-of-range/-1`, `memoryless/node2/bind`, ...
        package let name: String
        package let placement: NUMAPlacement
        package let matches: (StackError?) -> Bool
    }

    /// Out-of-range ids, offline and memoryless nodes, an empty interleave set.
    package static func invalidPlacements(_ topology: NUMATopology) -> [InvalidPlacement] {
        func outOfRange(_ node: Int) -> InvalidPlacement {
            InvalidPlacement(name: "out-of-range/\(node)", placement: .bind(node)) {
                if case .numaNodeOutOfRange(node, _)? = $0?.reason { true } else { false }
            }
        }
        let beyond = (topology.possible.last ?? topology.maxNode) + 1
        var cases = [outOfRange(-1), outOfRange(beyond), outOfRange(1 << 20), outOfRange(Int.max)]
        cases.append(
            InvalidPlacement(name: "empty-interleave", placement: .interleave([])) {
                if case .numaPlacementEmpty? = $0?.reason { true } else { false }
            })
        for node in topology.possible where topology.node(node)?.online != true {
            cases.append(
                InvalidPlacement(name: "offline/node\(node)", placement: .bind(node)) {
                    if case .numaNodeOffline(node, _)? = $0?.reason { true } else { false }
                })
        }
        for node in topology.nodes where node.online && !node.hasMemory {
            let nearest = topology.nearestMemoryNode(to: node.id)
            let placements: [(String, NUMAPlacement)] = [
                ("bind", .bind(node.id)), ("preferred", .preferred(node.id)),
                ("interleave", .interleave(topology.memoryNodes + [node.id])),
            ]
            for (mode, placement) in placements {
                cases.append(
                    InvalidPlacement(name: "memoryless/node\(node.id)/\(mode)", placement: placement) {
                        if case .numaNodeMemoryless(node.id, nearest)? = $0?.reason { true } else { false }
                    })
            }
        }
        return cases
    }

    /// The error allocating a small stack with `placement` gives, or nil when it is accepted.
    package static func rejection(_ allocator: any StackAllocator, _ placement: NUMAPlacement) -> StackError? {
        do {
            _ = try allocator.allocate(StackRequest(usableSize: 16 << 10, placement: placement))
            return nil
        } catch {
            return error
        }
    }
}

/// One stack allocated for a request, probed, and released: what its pages and guard looked like.
package struct PlacedStack {
    /// `StackDescriptor.node`.
    package let node: Int?
    /// The guard mechanism.
    package let mechanism: GuardMechanism
    /// Where the usable pages were.
    package let placement: PlacementReport
    /// Where the guard pages were (none should be present).
    package let guardPlacement: PlacementReport
    /// Guard soundness and residency.
    package let probe: StackProbeReport
    /// The policy the kernel holds for the usable range (get_mempolicy).
    package let policy: MemoryPolicy

    /// Allocates, reports, releases.
    package init(_ allocator: any StackAllocator, _ request: StackRequest) throws {
        let stack = try allocator.allocate(request)
        node = stack.node
        mechanism = stack.guardMechanism
        placement = try stack.placementReport()
        guardPlacement = try PlacementReport(range: stack.guardRange)
        probe = try StackProbeReport(layout: stack.descriptor.layout)
        policy = try MemoryPolicy(at: stack.descriptor.layout.usableBottom)
    }

    /// Every usable page present and on `nodes`, no guard page present.
    package func isComplete(on nodes: [Int]) -> Bool {
        placement.present == placement.pages && placement.pagesOutside(nodes) == 0 && guardPlacement.present == 0
            && (try? placement.verify(on: nodes)) != nil
    }
}
