import Glibc
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackAllocators
import StackTestSupport
import Testing

private let numaAvailable = NUMATopology.available
private let needsNUMA: Comment = "needs libnuma working here (numa_available() >= 0: a kernel with CONFIG_NUMA)"

@Suite("NUMA placement on this host")
struct PlacementTests {
    /// The nodes with memory; an unreadable topology or none with memory fails the test (never a pass
    /// over no nodes).
    static func memoryNodes(sourceLocation: SourceLocation = #_sourceLocation) throws -> [Int] {
        let nodes = try NUMATopology.current().memoryNodes
        try #require(!nodes.isEmpty, "the topology lists no node with memory", sourceLocation: sourceLocation)
        return nodes
    }

    @Test(
        "A stack bound to a node with memory has every prefaulted page there, by move_pages",
        .enabled(if: numaAvailable, needsNUMA), arguments: PrefaultStrategy.allCases)
    func bind(strategy: PrefaultStrategy) throws {
        let allocator = try MmapStackAllocator()
        for node in try Self.memoryNodes() {
            let stack = try allocator.allocate(
                StackRequest(usableSize: 256 << 10, prefault: PrefaultPolicy(strategy), placement: .bind(node)))
            #expect(stack.node == node)
            let report = try stack.placementReport()
            #expect(report.pages == 64)
            if strategy == .none {
                #expect(report.present <= 1)
            } else {
                #expect(report.pagesPerNode == [node: 64], "\(report)")
                #expect(report.notPresent == 0)
                // The verification can fail: the same pages judged against another node.
                #expect(throws: StackError.self) { try report.verify(on: [node + 1]) }
            }
            try report.verify(on: [node])
            // Prefault never touched the guard.
            #expect(try PlacementReport(range: stack.guardRange).present == 0)
        }
    }

    @Test(
        "Slab and pool stacks follow the placement they were configured with, and refuse another one",
        .enabled(if: numaAvailable, needsNUMA))
    func slabAndPoolPlacement() throws {
        let node = try #require(Self.memoryNodes().first)
        let slab = try SlabStackAllocator(.init(usableSize: 64 << 10, stacksPerRegion: 8, placement: .bind(node)))
        let pool = try PooledStackAllocator(
            wrapping: try MmapStackAllocator(),
            .init(stack: StackRequest(usableSize: 64 << 10, placement: .bind(node))))
        for allocator in [slab, pool] as [any StackAllocator] {
            let stack = try allocator.allocate(StackRequest(usableSize: 64 << 10, prefault: PrefaultPolicy(.populate)))
            #expect(stack.node == node)
            let report = try stack.placementReport()
            #expect(report.pagesPerNode == [node: 16], "\(allocator): \(report)")
            #expect {
                _ = try allocator.allocate(StackRequest(usableSize: 64 << 10, placement: .interleave([node])))
            } throws: { error in
                guard let error = error as? StackError else { return false }
                return error.code == .invalidArgument && error.isUsage && error.message.contains("placement")
            }
        }
    }

    @Test("Preferred and interleave placements put every page on their nodes", .enabled(if: numaAvailable, needsNUMA))
    func preferredAndInterleave() throws {
        let allocator = try MmapStackAllocator()
        let nodes = try Self.memoryNodes()
        let preferred = try allocator.allocate(
            StackRequest(usableSize: 128 << 10, prefault: PrefaultPolicy(.touch), placement: .preferred(nodes[0])))
        #expect(preferred.node == nodes[0])
        #expect(try preferred.placementReport().pagesPerNode == [nodes[0]: 32])
        let interleaved = try allocator.allocate(
            StackRequest(usableSize: 128 << 10, prefault: PrefaultPolicy(.populate), placement: .interleave(nodes)))
        #expect(interleaved.node == nil)
        let report = try interleaved.placementReport()
        #expect(report.present == 32)
        for node in nodes {
            #expect(
                (32 / nodes.count...(32 + nodes.count - 1) / nodes.count).contains(report.pagesPerNode[node] ?? 0),
                "\(report)")
        }
        try report.verify(on: nodes)
    }

    @Test(
        "Every invalid node is refused with its own error, and nothing stays mapped",
        .enabled(if: numaAvailable, needsNUMA))
    func invalidNodes() throws {
        let topology = try NUMATopology.current()
        let beyond = topology.possible.last! + 1
        var cases: [(NUMAPlacement, (StackError) -> Bool)] = []
        for node in [-1, -5, beyond, beyond + 63, 4096, 1 << 40, Int.max, Int.min] {
            let isOutOfRange: (StackError) -> Bool = {
                if case .numaNodeOutOfRange(node, topology.possible) = $0.reason { true } else { false }
            }
            cases += [
                (.bind(node), isOutOfRange), (.preferred(node), isOutOfRange),
                (.interleave(topology.memoryNodes + [node]), isOutOfRange),
            ]
        }
        cases.append((.interleave([]), { if case .numaPlacementEmpty = $0.reason { true } else { false } }))
        for node in topology.nodes where !node.hasMemory {
            cases.append((.bind(node.id), { if case .numaNodeMemoryless(node.id, _) = $0.reason { true } else { false } }))
        }
        let allocator = try MmapStackAllocator()
        for (placement, matches) in cases {
            do {
                _ = try allocator.allocate(
                    StackRequest(usableSize: 64 << 10, prefault: PrefaultPolicy(.populate), placement: placement))
                Issue.record("\(placement) was accepted")
            } catch {
                #expect(matches(error), "\(placement) gave \(error)")
                #expect(error.description.contains("node"))
            }
        }
        #expect(allocator.stats.allocations == 0)
        #expect(allocator.stats.bytesReserved == 0)
        // The descriptions name the fix.
        #expect(StackError.numaNodeOutOfRange(node: 9, possible: [0, 1]).description.contains("numactl -H"))
        #expect(StackError.numaNodeMemoryless(node: 2, nearest: 0).description.contains("bind to node 0"))
        #expect(
            StackError.numaNodeOffline(node: 3, online: [0]).description.contains("/sys/devices/system/node/online"))
    }

    @Test(
        "Refused placements leave no mapping behind (address space, in a child process)", needsNoSanitizer,
        .enabled(if: numaAvailable, needsNUMA))
    func refusalsDoNotLeak() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let allocator = try MmapStackAllocator()
            let request = StackRequest(usableSize: 64 << 10)
            let attempts = 1000
            // A leaked stack (adjacent ones merge into one map line) shows in the address space: 3,000 of
            // them would add 375 MiB. A thread the test runtime starts meanwhile adds its stack, 8 MiB.
            let baseline = try SystemFile.processStatusBytes("VmSize")
            for node in [-1, 1 << 20, Int.max] {
                for _ in 0..<attempts {
                    var placed = request
                    placed.placement = .bind(node)
                    do {
                        _ = try allocator.allocate(placed)
                        fail("node \(node) accepted")
                    } catch {}
                }
            }
            let grown = try SystemFile.processStatusBytes("VmSize") - baseline
            ensure(grown < 64 << 20, "the address space grew by \(grown) bytes over \(3 * attempts) refused placements")
        }
    }

    @Test(
        "1,000 bound stacks with lightweight guards add fewer than 100 map lines (bound before the guard, they merge)", needsNoSanitizer,
        .enabled(
            if: numaAvailable && GuardInstaller.lightweightGuardsSupported,
            "needs libnuma and MADV_GUARD_INSTALL (Linux >= 6.13)"))
    func boundStacksMerge() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            let allocator = try MmapStackAllocator(guardMode: .lightweight)
            let node = try NUMATopology.current().memoryNodes[0]
            let baseline = try MapCount.current()
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: 1000)
            for index in 0..<1000 {
                (storage + index).initialize(
                    to: try allocator.allocate(StackRequest(usableSize: 64 << 10, placement: .bind(node))))
            }
            let live = try MapCount.current()
            storage.deinitialize(count: 1000)
            storage.deallocate()
            ensure(live - baseline < 100, "1,000 bound stacks added \(live - baseline) map lines")
        }
    }

    @Test(
        "Existing pages: strict and move accept pages already on the node; leave keeps them",
        .enabled(if: numaAvailable, needsNUMA))
    func existingPagesOnTheirNode() throws {
        let node = try Self.memoryNodes()[0]
        let allocator = try MmapStackAllocator()
        for mode in NUMAPlacement.ExistingPages.allCases {
            let stack = try allocator.allocate(
                StackRequest(usableSize: 64 << 10, prefault: PrefaultPolicy(.populate), placement: .bind(node)))
            try NUMABinding.apply(.bind(node, existingPages: mode), to: stack.descriptor.layout.usableRange)
            #expect(try stack.placementReport().pagesPerNode == [node: 16])
        }
    }
}

@Suite("Placement reports")
struct PlacementReportTests {
    /// A fresh private anonymous mapping of `pages` system pages; unmapped after `body`.
    func withMapping(pages: Int, _ body: (UInt) throws -> Void) throws {
        let size = pages * systemPageSize
        let raw = try #require(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        #expect(raw != MAP_FAILED)
        defer { precondition(munmap(raw, size) == 0) }
        try body(UInt(bitPattern: raw))
    }

    @Test("Untouched pages are not present, and asking does not fault them in", .enabled(if: numaAvailable, needsNUMA))
    func untouched() throws {
        try withMapping(pages: 3000) { base in
            let range = base..<base + UInt(3000 * systemPageSize)
            let report = try PlacementReport(range: range)
            #expect(report.pages == 3000)
            #expect(report.notPresent == 3000)
            #expect(report.present == 0)
            try report.verify(on: [])  // nothing present, nothing misplaced
            #expect(try Probe.residentPages(in: range) == 0)
        }
    }

    @Test("Touched pages are counted on their node, across query chunks", .enabled(if: numaAvailable, needsNUMA))
    func touched() throws {
        let node = try #require(NUMATopology.current().memoryNodes.first)
        try withMapping(pages: 3000) { base in
            // Every third page, so present and absent pages alternate across the 1024-page chunks.
            for page in stride(from: 0, to: 3000, by: 3) {
                UnsafeMutableRawPointer(bitPattern: base + UInt(page * systemPageSize))!.storeBytes(
                    of: 1, as: UInt8.self)
            }
            let range = base..<base + UInt(3000 * systemPageSize)
            let report = try PlacementReport(range: range)
            #expect(report.present == 1000)
            #expect(report.notPresent == 2000)
            #expect(report.lowestPageOnNode[node] == base)
            guard
                case .numaPlacementWrong(let expected, let misplaced, let present, _, let first)? =
                    #expect(throws: StackError.self, performing: { try report.verify(on: [node + 1]) })?.reason
            else { return }
            #expect(expected == [node + 1] && misplaced == 1000 && present == 1000 && first == base)
        }
    }

    @Test("Unmapped pages are reported as EFAULT, not as an error", .enabled(if: numaAvailable, needsNUMA))
    func unmapped() throws {
        // Below vm.mmap_min_addr (64 KiB by default): nothing can be mapped there, whatever runs in parallel.
        let base = UInt(systemPageSize)
        let report = try PlacementReport(range: base..<base + UInt(8 * systemPageSize))
        #expect(report.unreported == [Int(EFAULT): 8])
        #expect(report.present == 0)
    }

    @Test("Unaligned ranges and bad page sizes are refused")
    func badInput() {
        let page = UInt(systemPageSize)
        #expect(throws: StackError.self) { try PlacementReport(range: (page + 1)..<(3 * page)) }
        #expect(throws: StackError.self) { try PlacementReport(range: page..<(3 * page), pageSize: 12_288) }
        #expect(throws: StackError.self) { try PlacementReport(range: page..<(3 * page), pageSize: 1024) }
        #expect(throws: StackError.self) { try PlacementReport(range: page..<(3 * page), pageSize: 2 << 20) }
    }
}
