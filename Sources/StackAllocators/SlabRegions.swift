/// One reserved region of a slab: `capacity` slots of `guard + usable` bytes from `base`.
/// Slots `0..<carved` have their guard installed; `free` holds those of them not handed out.
struct SlabRegion {
    /// First byte of the region (slot 0's guard).
    let base: UInt
    /// Slots whose guard is installed (the low ones; carving goes up).
    var carved = 0
    /// Slots handed out and not yet released.
    var live = 0
    /// Released slots, guard kept: reused last-in first-out, before any new slot is carved.
    var free: [UInt32] = []
    /// Whether the region is in `SlabRegions.available`.
    var listed = false
}

/// Where a slab's next stack comes from.
struct SlabSlot: Hashable {
    /// Index of the region in `SlabRegions.regions`.
    let region: Int
    /// Slot within the region.
    let slot: Int
    /// True when the slot was never carved: its guard must be installed before use.
    let isNew: Bool

    /// The slot as a `StackDescriptor.tag`: region in the high 32 bits, slot in the low 32.
    var tag: UInt { UInt(region) << 32 | UInt(slot) }

    /// Decodes a tag made by `tag`.
    init(tag: UInt) {
        region = Int(tag >> 32)
        slot = Int(tag & 0xFFFF_FFFF)
        isNew = false
    }

    init(region: Int, slot: Int, isNew: Bool) {
        self.region = region
        self.slot = slot
        self.isNew = isNew
    }
}

/// The bookkeeping of a slab, without syscalls: which regions exist, which slots are free, which
/// regions have room. Compact by design: one `UInt32` per released slot, a few words per region.
/// Not thread-safe: the slab keeps it behind its mutex.
struct SlabRegions {
    /// Slots per region.
    let capacity: Int
    /// Regions by index; nil where a region was unmapped (its index is in `vacant`).
    private(set) var regions: [SlabRegion?] = []
    /// Indices of unmapped regions, for reuse.
    private var vacant: [Int] = []
    /// Regions with a free or never-carved slot; the most recently released into is last.
    private var available: [Int] = []
    /// Mapped regions with no live stack.
    private(set) var emptyRegions = 0
    /// Released slots across all regions.
    private(set) var cached = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// The slot the next stack should use: a released one (guard already installed) if any region has
    /// one, else the next uncarved slot of a region with room; nil when every region is full.
    /// Nothing changes until `take(_:)`.
    mutating func nextSlot() -> SlabSlot? {
        while let index = available.last {
            let region = regions[index]!
            if let slot = region.free.last {
                return SlabSlot(region: index, slot: Int(slot), isNew: false)
            }
            if region.carved < capacity {
                return SlabSlot(region: index, slot: region.carved, isNew: true)
            }
            available.removeLast()
            regions[index]!.listed = false
        }
        return nil
    }

    /// Hands out `slot`, as returned by `nextSlot()` (for a new slot: after its guard was installed).
    mutating func take(_ slot: SlabSlot) {
        if slot.isNew {
            regions[slot.region]!.carved += 1
        } else {
            regions[slot.region]!.free.removeLast()
            cached -= 1
        }
        if regions[slot.region]!.live == 0 { emptyRegions -= 1 }
        regions[slot.region]!.live += 1
    }

    /// Records a region mapped at `base`; returns its index.
    mutating func add(base: UInt) -> Int {
        let region = SlabRegion(base: base, listed: true)
        let index: Int
        if let reused = vacant.popLast() {
            regions[reused] = region
            index = reused
        } else {
            regions.append(region)
            index = regions.count - 1
        }
        available.append(index)
        emptyRegions += 1
        return index
    }

    /// The region's base if `slot` names a handed-out slot of a mapped region, else nil.
    func base(of slot: SlabSlot) -> UInt? {
        guard slot.region >= 0, slot.region < regions.count, let region = regions[slot.region],
            slot.slot < region.carved, region.live > 0
        else { return nil }
        return region.base
    }

    /// Takes back a handed-out slot. Returns the region's index when it just became empty and more than
    /// `retainingEmpty` regions are empty: the caller unmaps it after `remove(_:)`.
    mutating func put(_ slot: SlabSlot, retainingEmpty: Int) -> Int? {
        regions[slot.region]!.free.append(UInt32(slot.slot))
        regions[slot.region]!.live -= 1
        cached += 1
        if !regions[slot.region]!.listed {
            regions[slot.region]!.listed = true
            available.append(slot.region)
        }
        guard regions[slot.region]!.live == 0 else { return nil }
        emptyRegions += 1
        return emptyRegions > retainingEmpty ? slot.region : nil
    }

    /// Forgets an empty region (the caller unmaps it); returns it, with the count of its released slots.
    mutating func remove(_ index: Int) -> SlabRegion {
        let region = regions[index]!
        precondition(region.live == 0, "a slab region with live stacks cannot be removed")
        regions[index] = nil
        vacant.append(index)
        if region.listed, let position = available.lastIndex(of: index) {
            available.remove(at: position)
        }
        emptyRegions -= 1
        cached -= region.free.count
        return region
    }

    /// Indices of the mapped regions with no live stack.
    var emptyRegionIndices: [Int] {
        regions.indices.filter { regions[$0].map { $0.live == 0 } ?? false }
    }
}
