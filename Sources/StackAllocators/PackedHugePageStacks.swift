
/// The regions that packed stacks are carved from: each is one huge page (mapped by `HugePageRegion`,
/// so with a hardware guard below its lowest stack), cut into equal slots of one stack size.
///
/// Nothing can trap between two slots (hugetlb protects only whole huge pages), which is why packed
/// stacks carry a `Canary` instead. A region is unmapped, and its huge page goes back to the pool, as
/// soon as its last stack is released.
final class PackedHugePageStacks: Sendable {
    /// Stacks share a region only when they agree on all of this.
    struct Key: Sendable, Hashable {
        /// Where the region's pages come from.
        let backing: HugePageBacking
        /// Usable bytes of each stack, a multiple of the system page size.
        let slotSize: Int
        /// The region's guard, below its lowest stack.
        let guardSize: Int
    }

    /// A slot handed out: the region it is in, and its lowest address.
    struct Slot: Sendable, Hashable {
        /// The region's identifier (kept with the stack in the allocator's `LiveStacks`).
        let region: UInt
        /// The slot's lowest address: the stack's usable bottom.
        let address: UInt
    }

    /// A mapped region: its layout, and the registration of its guard (0 when unguarded), which the
    /// region holds for its life, as a `Stack` holds its own.
    struct Mapping: Sendable, Hashable {
        let layout: StackLayout
        let guardRegistration: UInt64
    }

    private struct Region {
        let key: Key
        let mapping: Mapping
        var layout: StackLayout { mapping.layout }
        /// Free slot indices, taken from the end: a fresh region hands out its lowest slot first, then
        /// the most recently released.
        var free: [Int]
        var slotCount: Int { layout.sizes.usableSize / key.slotSize }
    }

    private struct State {
        var nextID: UInt = 1
        var regions: [UInt: Region] = [:]
        /// Regions with at least one free slot, per key.
        var open: [Key: Set<UInt>] = [:]
    }

    private let state = Lock(State())

    /// A free slot in an existing region for `key`, or nil when every region for it is full. The
    /// fullest region is used first (the oldest among equals), so that emptier ones can drain and give
    /// their huge page back.
    func takeSlot(_ key: Key) -> Slot? {
        state.withLock { state in
            let fullest = state.open[key]?.min { left, right in
                let (leftFree, rightFree) = (state.regions[left]!.free.count, state.regions[right]!.free.count)
                return leftFree != rightFree ? leftFree < rightFree : left < right
            }
            guard let id = fullest else { return nil }
            return Self.take(from: id, in: &state)
        }
    }

    /// Adds a region just mapped for `key` (its usable range is the huge page to carve) and takes a slot.
    func add(_ mapping: Mapping, key: Key) -> Slot {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            let count = mapping.layout.sizes.usableSize / key.slotSize
            state.regions[id] = Region(key: key, mapping: mapping, free: Array((0..<count).reversed()))
            state.open[key, default: []].insert(id)
            return Self.take(from: id, in: &state)
        }
    }

    /// Gives `slot` back. Returns the region when this was its last stack: the region is then forgotten
    /// and the caller ends its registration and unmaps it.
    func release(_ slot: Slot) -> Mapping? {
        state.withLock { state -> Mapping? in
            guard var region = state.regions[slot.region] else { return nil }
            region.free.append(Int(slot.address - region.layout.usableBottom) / region.key.slotSize)
            guard region.free.count < region.slotCount else {
                state.regions[slot.region] = nil
                state.open[region.key]?.remove(slot.region)
                if state.open[region.key]?.isEmpty == true { state.open[region.key] = nil }
                return region.mapping
            }
            state.regions[slot.region] = region
            state.open[region.key, default: []].insert(slot.region)
            return nil
        }
    }

    private static func take(from id: UInt, in state: inout State) -> Slot {
        var region = state.regions[id]!
        let index = region.free.removeLast()
        if region.free.isEmpty {
            state.open[region.key]?.remove(id)
            if state.open[region.key]?.isEmpty == true { state.open[region.key] = nil }
        }
        state.regions[id] = region
        return Slot(region: id, address: region.layout.usableBottom + UInt(index * region.key.slotSize))
    }
}
