import FuzzSupport
@_spi(Benchmarks) import StackAllocators

/// The most bytes one stack's prefault may make resident, and the most an input may make resident in
/// all (libFuzzer's default RSS limit is 2 GiB).
let prefaultCap = 4 << 20
let residentBudget = 96 << 20

extension ByteReader {
    /// A usable size: mostly valid (any byte count up to 256 KiB, page multiples, up to 64 MiB),
    /// sometimes on the edges of `StackSizes`' bounds or absurd.
    mutating func usableSize() -> Int {
        switch byte() % 8 {
        case 0, 1, 2: return int(in: 1...(256 << 10))
        case 3: return int(in: 1...256) * systemPageSize
        case 4: return int(in: 1...(64 << 20))
        case 5: return pick([StackSizes.maximumUsableSize, StackSizes.maximumUsableSize + 1, StackSizes.maximumUsableSize - 1, 0, -1, Int.min, Int.max, Int.max - 4094])
        default: return edgyInt(edges: absurdIntegers + [StackSizes.maximumUsableSize], pageSize: systemPageSize)
        }
    }

    /// A guard size: mostly the usual ones, sometimes unaligned, on the 64 MiB bound, or absurd.
    mutating func guardSize() -> Int {
        switch byte() % 6 {
        case 0, 1, 2: return pick([0, systemPageSize, 64 << 10, 1, systemPageSize + 1, (64 << 10) - 1, 16 << 10])
        case 3: return int(in: 0...(1 << 20))
        case 4: return pick([StackSizes.maximumGuardSize, StackSizes.maximumGuardSize + 1, StackSizes.maximumGuardSize - systemPageSize + 1, -1, Int.min, Int.max])
        default: return edgyInt(edges: absurdIntegers + [StackSizes.maximumGuardSize], pageSize: systemPageSize)
        }
    }

    /// A prefault policy whose depth is valid (bounded by `prefaultCap`) or negative.
    mutating func prefaultPolicy() -> PrefaultPolicy {
        let strategy = pick(PrefaultStrategy.allCases)
        switch byte() % 4 {
        case 0: return PrefaultPolicy(strategy, depth: .all)
        case 1: return PrefaultPolicy(strategy, depth: .top(bytes: int(in: 0...prefaultCap)))
        case 2: return PrefaultPolicy(strategy, depth: .top(bytes: int(in: 0...64) * systemPageSize))
        default: return PrefaultPolicy(strategy, depth: .top(bytes: pick([-1, Int.min, -systemPageSize])))
        }
    }

    /// Mostly no placement; sometimes one on this machine's memory nodes, on nodes it lacks, on
    /// absurd node numbers, or an interleave over no node at all.
    mutating func placement() -> NUMAPlacement? {
        let candidates = memoryNodes + [memoryNodes.count, 63, 64, 1024, -1, Int.min, Int.max]
        switch byte() % 10 {
        case 0: return .bind(pick(candidates))
        case 1: return .preferred(pick(candidates))
        case 2: return .interleave((0..<int(in: 0...3)).map { _ in pick(candidates) })
        default: return nil
        }
    }

    /// A whole request. `.all` on a stack larger than `prefaultCap` is cut to the cap, and a prefault
    /// that would overrun the input's `remainingBudget` becomes `.none`.
    mutating func request(remainingBudget: Int) -> StackRequest {
        let usable = usableSize()
        let guardSize = guardSize()
        var policy = prefaultPolicy()
        if case .all = policy.depth, usable > prefaultCap { policy.depth = .top(bytes: prefaultCap) }
        if policy.bytes(usable: usable) > remainingBudget { policy.strategy = .none }
        return StackRequest(usableSize: usable, guardSize: guardSize, prefault: policy, placement: placement())
    }
}

/// The NUMA nodes with memory on this machine: where a placement may put pages.
let memoryNodes: [Int] = {
    do { return try NUMATopology.current().memoryNodes } catch { finding("reading the NUMA topology failed: \(error)") }
}()

extension NUMAPlacement {
    /// Whether the placement can be honoured here: at least one node, and only nodes with memory.
    var isValid: Bool { !nodes.isEmpty && nodes.allSatisfy(memoryNodes.contains) }
}

/// Whether `error` says a placement names no usable node: a node this machine lacks (unsupported here),
/// or no node or a negative one (bad input), named in the message.
func isPlacementError(_ error: StackError) -> Bool {
    (error.code == .unsupported || error.code == .invalidArgument) && error.message.hasPrefix("NUMA ")
}

extension PrefaultPolicy {
    /// An upper bound of the bytes this policy makes resident on a stack of `usable` bytes.
    func bytes(usable: Int) -> Int {
        guard strategy != .none else { return 0 }
        switch depth {
        case .all: return max(usable, 0)
        case .top(let bytes): return max(0, min(bytes, usable)) + systemPageSize
        }
    }

    /// Whether the policy itself is invalid: a negative depth, which matters only when it prefaults.
    var isInvalid: Bool {
        if strategy != .none, case .top(let bytes) = depth, bytes < 0 { return true }
        return false
    }
}
