import StackAllocators

/// `verify` for NUMA placement: on every node with memory, a stack bound to it and prefaulted has every
/// page there (move_pages says so); nodes that cannot take pages are refused with their own errors.
enum NUMAChecks {
    static let allocatorName = "mmap+numa"
    /// The stack size of the placement checks.
    static let stackSize = 256 << 10

    static func run(into report: inout VerifyReport) {
        let topology: NUMATopology
        do {
            topology = try NUMATopology.current()
        } catch {
            report.add("numa", allocatorName, true, "skipped: \(error)")
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
                let passed = placed.isComplete(on: [node]) && placed.node == node
                return (passed, "bound to node \(node), populated: \(placed.placement)")
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

    /// A placement no allocation may accept on this machine, and the error it must get.
    struct InvalidPlacement {
        /// A short stable name: `out-of-range/-1`, `memoryless/node2/bind`, ...
        let name: String
        let placement: NUMAPlacement
        let matches: (StackError?) -> Bool
    }

    /// Out-of-range ids, offline and memoryless nodes, an empty interleave set.
    static func invalidPlacements(_ topology: NUMATopology) -> [InvalidPlacement] {
        func outOfRange(_ node: Int) -> InvalidPlacement {
            InvalidPlacement(name: "out-of-range/\(node)", placement: .bind(node)) {
                if case .numaNodeOutOfRange(node, _) = $0 { true } else { false }
            }
        }
        let beyond = (topology.possible.last ?? topology.maxNode) + 1
        var cases = [outOfRange(-1), outOfRange(beyond), outOfRange(1 << 20), outOfRange(Int.max)]
        cases.append(
            InvalidPlacement(name: "empty-interleave", placement: .interleave([])) {
                if case .numaPlacementEmpty = $0 { true } else { false }
            })
        for node in topology.possible where topology.node(node)?.online != true {
            cases.append(
                InvalidPlacement(name: "offline/node\(node)", placement: .bind(node)) {
                    if case .numaNodeOffline(node, _) = $0 { true } else { false }
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
                        if case .numaNodeMemoryless(node.id, nearest) = $0 { true } else { false }
                    })
            }
        }
        return cases
    }

    /// The error allocating a small stack with `placement` gives, or nil when it is accepted.
    static func rejection(_ allocator: any StackAllocator, _ placement: NUMAPlacement) -> StackError? {
        do {
            _ = try allocator.allocate(StackRequest(usableSize: 16 << 10, placement: placement))
            return nil
        } catch {
            return error
        }
    }
}

/// One stack allocated for a request, probed, and released: what its pages and guard looked like.
struct PlacedStack {
    /// `StackDescriptor.node`.
    let node: Int?
    /// The guard mechanism.
    let mechanism: GuardMechanism
    /// Where the usable pages were.
    let placement: PlacementReport
    /// Where the guard pages were (none should be present).
    let guardPlacement: PlacementReport
    /// Guard soundness and residency.
    let probe: StackProbeReport

    /// Allocates, reports, releases.
    init(_ allocator: any StackAllocator, _ request: StackRequest) throws(StackError) {
        let stack = try allocator.allocate(request)
        node = stack.node
        mechanism = stack.guardMechanism
        placement = try stack.placementReport()
        guardPlacement = try PlacementReport(range: stack.guardRange)
        probe = try StackProbeReport(layout: stack.descriptor.layout)
    }

    /// Every usable page present and on `nodes`, no guard page present.
    func isComplete(on nodes: [Int]) -> Bool {
        placement.present == placement.pages && placement.pagesOutside(nodes) == 0 && guardPlacement.present == 0
            && (try? placement.verify(on: nodes)) != nil
    }
}
