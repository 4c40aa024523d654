/// One reserved region of a slab: `capacity` slots of `guard + usable` bytes from `base`.
/// Slots `0..<carved` were carved (their guard installed, except those in `unguarded`); `free` holds the
/// released ones whose pages were discarded, `fresh` the ones never handed out.
struct SlabRegion {
    /// First byte of the region (slot 0's guard).
    let base: UInt
    /// Slots in the region.
    let capacity: Int
    /// Slots carved (the low ones; carving goes up, a slot or a window of slots at a time).
    var carved: Int { serials.count }
    /// Per carved slot: the serial of the stack handed out in it, 0 while it is not handed out.
    var serials: [UInt] = []
    /// Slots handed out, or released with their pages not yet discarded: the region stays mapped while
    /// any is.
    var occupied = 0
    /// Of `occupied`, the released slots waiting in `SlabRegions.undiscarded`.
    var undiscarded = 0
    /// Released slots, guard kept, pages discarded: reused last-in first-out, before any new slot is carved.
    var free: [UInt32] = []
    /// Slots carved with a window (`SlabRegions.take(_:window:)`), guarded, never handed out: the lowest
    /// is last.
    var fresh: [UInt32] = []
    /// Carved slots whose guard could not be installed (neither guarded nor registered): carved again
    /// before a new slot is.
    var unguarded: [UInt32] = []
    /// Whether the region is in `SlabRegions.available`.
    var listed = false
    /// Whether the region was mapped PROT_NONE (strict overcommit): a slot is made writable when carved.
    var inaccessible = false
}

/// Where a slab's next stack comes from.
struct SlabSlot: Hashable {
    /// What a slot needs before its next owner gets it.
    enum Condition: Hashable {
        /// Nothing: guarded, and its pages were discarded when it was released.
        case ready
        /// Nothing either: guarded when its window was carved, never handed out.
        case fresh
        /// A discard of its pages: it was released and waits for its batch (`SlabRegions.undiscarded`).
        case undiscarded
        /// Its guard: never carved, or its guard failed.
        case unguarded
    }

    /// Index of the region in `SlabRegions.regions`.
    let region: Int
    /// Slot within the region.
    let slot: Int
    let condition: Condition
}

/// The bookkeeping of a slab, without syscalls: which regions exist, which slots are free, which
/// regions have room, which stack each slot holds. Compact by design: a word per carved slot (the
/// serial of its stack), one `UInt32` per released slot, a few words per region.
/// Not thread-safe: the slab keeps it behind its mutex.
struct SlabRegions {
    /// Bytes per slot (guard and usable).
    let stride: Int
    /// Regions by index; nil where a region was unmapped (its index is in `vacant`).
    private(set) var regions: [SlabRegion?] = []
    /// Mapped regions as (base, index), ascending by base: finds a released stack's region.
    private var byBase: [(base: UInt, index: Int)] = []
    /// The serial of the next stack handed out (never 0, never reused).
    private var nextSerial: UInt = 1
    /// Indices of unmapped regions, for reuse.
    private var vacant: [Int] = []
    /// Regions with a free or never-carved slot; the most recently released into is last.
    private var available: [Int] = []
    /// Mapped regions with no live stack.
    private(set) var emptyRegions = 0
    /// Released slots across all regions, waiting for their discard or not.
    private(set) var cached = 0
    /// Released slots whose pages are not discarded yet, the most recent last: they are discarded together
    /// (`holdForDiscard`), or one by one when reused before that.
    private(set) var undiscarded: [SlabSlot] = []
    /// How many released slots wait for their discard before the batch is handed back.
    let discardBatch: Int

    init(stride: Int, discardBatch: Int) {
        self.stride = stride
        self.discardBatch = discardBatch
    }

    /// The slot the next stack should use: the most recently released one (guard installed; still waiting
    /// for its discard, or discarded), else one whose guard failed, one carved ahead, or the next uncarved
    /// slot of a region with room; nil when every region is full. Nothing changes until `take(_:)`.
    mutating func nextSlot() -> SlabSlot? {
        if let waiting = undiscarded.last { return waiting }
        while let index = available.last {
            // Read in place: a copy of the region would retain and release its three arrays.
            if let slot = regions[index]!.free.last {
                return SlabSlot(region: index, slot: Int(slot), condition: .ready)
            }
            if let slot = regions[index]!.unguarded.last {
                return SlabSlot(region: index, slot: Int(slot), condition: .unguarded)
            }
            if let slot = regions[index]!.fresh.last {
                return SlabSlot(region: index, slot: Int(slot), condition: .fresh)
            }
            let carved = regions[index]!.carved
            if carved < regions[index]!.capacity {
                return SlabSlot(region: index, slot: carved, condition: .unguarded)
            }
            available.removeLast()
            regions[index]!.listed = false
        }
        return nil
    }

    /// Hands out `slot`, as returned by `nextSlot()` (a new slot's guard is installed next, outside the
    /// slab's lock; if that fails, the slot comes back through `reclaim` and `put(_:guarded: false)`);
    /// returns the serial of the stack it now holds. A slot never carved is carved with the `window - 1`
    /// slots above it (at most up to the region's end), which the caller guards with it and hands to
    /// `settle(window:)`.
    mutating func take(_ slot: SlabSlot, window: Int = 1) -> UInt {
        let serial = nextSerial
        nextSerial += 1
        switch slot.condition {
        case .unguarded where slot.slot == regions[slot.region]!.carved:
            precondition(window >= 1 && slot.slot + window <= regions[slot.region]!.capacity, "a window inside its region")
            regions[slot.region]!.serials.append(serial)
            regions[slot.region]!.serials.append(contentsOf: repeatElement(0, count: window - 1))
            if regions[slot.region]!.occupied == 0 { emptyRegions -= 1 }
            // The window's other slots hold the region until `settle(window:)`.
            regions[slot.region]!.occupied += window
            return serial
        case .unguarded:
            regions[slot.region]!.unguarded.removeLast()
            regions[slot.region]!.serials[slot.slot] = serial
        case .ready:
            regions[slot.region]!.free.removeLast()
            regions[slot.region]!.serials[slot.slot] = serial
            cached -= 1
        case .fresh:
            regions[slot.region]!.fresh.removeLast()
            regions[slot.region]!.serials[slot.slot] = serial
        case .undiscarded:
            undiscarded.removeLast()
            regions[slot.region]!.undiscarded -= 1
            regions[slot.region]!.serials[slot.slot] = serial
            cached -= 1
            return serial  // still occupied
        }
        if regions[slot.region]!.occupied == 0 { emptyRegions -= 1 }
        regions[slot.region]!.occupied += 1
        return serial
    }

    /// The handed-out slot whose stack starts at `base` with `serial`, now marked as not handed out (a
    /// second call for it finds nothing); nil when no slot holds that stack. The caller then `put`s it.
    mutating func reclaim(base: UInt, serial: UInt) -> SlabSlot? {
        // The last region starting at or below `base`.
        var low = 0
        var high = byBase.count
        while low < high {
            let middle = (low + high) / 2
            if byBase[middle].base <= base { low = middle + 1 } else { high = middle }
        }
        guard low > 0, serial != 0 else { return nil }
        let (regionBase, index) = byBase[low - 1]
        let offset = base - regionBase
        guard offset % UInt(stride) == 0, offset / UInt(stride) < UInt(regions[index]!.carved) else { return nil }
        let slot = Int(offset / UInt(stride))
        guard regions[index]!.serials[slot] == serial else { return nil }
        regions[index]!.serials[slot] = 0
        return SlabSlot(region: index, slot: slot, condition: .undiscarded)
    }

    /// Makes the slots of a window `take` carved above its first one available, their guards installed
    /// (or, for those in `unguarded`, not): handed out lowest first, before any new slot is carved. The
    /// window's first slot is still handed out, so the region stays occupied.
    mutating func settle(window slots: Range<Int>, in region: Int, unguarded failed: [Int]) {
        for slot in slots.reversed() {
            if failed.contains(slot) {
                regions[region]!.unguarded.append(UInt32(slot))
            } else {
                regions[region]!.fresh.append(UInt32(slot))
            }
        }
        regions[region]!.occupied -= slots.count
        if !regions[region]!.listed {
            regions[region]!.listed = true
            available.append(region)
        }
    }

    /// Keeps a slot `reclaim` returned until its pages are discarded. Returns every waiting slot, for the
    /// caller to discard and `put` back, once `discardBatch` wait or when the slot's region holds nothing
    /// else (so that an emptied region is unmapped or kept clean as soon as it empties); nil otherwise.
    mutating func holdForDiscard(_ slot: SlabSlot) -> [SlabSlot]? {
        undiscarded.append(slot)
        regions[slot.region]!.undiscarded += 1
        cached += 1
        // Read in place: a copy of the region would retain and release its arrays.
        let emptied = regions[slot.region]!.occupied == regions[slot.region]!.undiscarded
        guard undiscarded.count >= discardBatch || emptied else { return nil }
        return takeUndiscarded()
    }

    /// Every slot waiting for its discard, for the caller to discard and `put` back.
    mutating func takeUndiscarded() -> [SlabSlot] {
        for slot in undiscarded { regions[slot.region]!.undiscarded -= 1 }
        cached -= undiscarded.count
        defer { undiscarded.removeAll(keepingCapacity: true) }
        return undiscarded
    }

    /// First byte of `slot` (its guard).
    func base(of slot: SlabSlot) -> UInt {
        regions[slot.region]!.base + UInt(slot.slot * stride)
    }

    /// Records a region of `capacity` slots mapped at `base` (`inaccessible`: PROT_NONE until carved);
    /// returns its index.
    mutating func add(base: UInt, capacity: Int, inaccessible: Bool = false) -> Int {
        let region = SlabRegion(base: base, capacity: capacity, listed: true, inaccessible: inaccessible)
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
        let position = byBase.firstIndex { $0.base > base } ?? byBase.count
        byBase.insert((base, index), at: position)
        return index
    }

    /// Takes back a slot `reclaim` or `takeUndiscarded` returned, its pages discarded: `guarded` when its
    /// guard is installed and registered, false when installing them failed. Returns the region's index
    /// when it just became empty and more than `retainingEmpty` regions are empty: the caller unmaps it
    /// after `remove(_:)`.
    mutating func put(_ slot: SlabSlot, retainingEmpty: Int, guarded: Bool = true) -> Int? {
        if guarded {
            regions[slot.region]!.free.append(UInt32(slot.slot))
            cached += 1
        } else {
            regions[slot.region]!.unguarded.append(UInt32(slot.slot))
        }
        regions[slot.region]!.occupied -= 1
        if !regions[slot.region]!.listed {
            regions[slot.region]!.listed = true
            available.append(slot.region)
        }
        guard regions[slot.region]!.occupied == 0 else { return nil }
        emptyRegions += 1
        return emptyRegions > retainingEmpty ? slot.region : nil
    }

    /// Forgets an empty region (the caller unmaps it); returns it, with the count of its released slots.
    mutating func remove(_ index: Int) -> SlabRegion {
        let region = regions[index]!
        precondition(region.occupied == 0, "a slab region with live or undiscarded stacks cannot be removed")
        regions[index] = nil
        vacant.append(index)
        byBase.removeAll { $0.index == index }
        if region.listed, let position = available.lastIndex(of: index) {
            available.remove(at: position)
        }
        emptyRegions -= 1
        cached -= region.free.count
        return region
    }

    /// Indices of the mapped regions with no live or undiscarded stack.
    var emptyRegionIndices: [Int] {
        regions.indices.filter { regions[$0].map { $0.occupied == 0 } ?? false }
    }
}
