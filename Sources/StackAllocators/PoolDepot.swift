/// The shared part of a pool, behind its mutex: idle stacks no thread cache holds, and slot ids.
/// Plain bookkeeping: no syscalls, no inner allocator calls (the pool makes those outside the lock).
struct PoolDepot {
    /// An idle stack and when it became idle (`CoarseClock` nanoseconds).
    struct Entry {
        let slot: UInt32
        let since: Int64
    }

    /// Idle stacks, oldest first: taken from the end (warmest), trimmed from the start (coldest).
    private(set) var idle: [Entry] = []
    /// Slot ids not holding a stack.
    private var freeSlots: [UInt32] = []
    /// Slot ids `0..<nextSlot` have been used.
    private(set) var nextSlot = 0
    /// When the last trim pass ran.
    private var lastTrim = CoarseClock.now()

    /// Takes up to `count` of the warmest idle stacks, giving each to `body`, warmest last; returns how
    /// many were taken.
    mutating func take(upTo count: Int, _ body: (UInt32) -> Void) -> Int {
        let taken = Swift.min(count, idle.count)
        for entry in idle[(idle.count - taken)...] { body(entry.slot) }
        idle.removeLast(taken)
        return taken
    }

    /// Adds idle stacks, idle from `now`.
    mutating func put<S: Sequence<UInt32>>(_ slots: S, now: Int64) {
        for slot in slots { idle.append(Entry(slot: slot, since: now)) }
    }

    /// A slot id for a new stack, or nil when the table is full.
    mutating func reserveSlot() -> UInt32? {
        if let slot = freeSlots.popLast() { return slot }
        guard nextSlot < PoolSlotTable.capacity else { return nil }
        nextSlot += 1
        return UInt32(nextSlot - 1)
    }

    /// Returns slot ids whose stacks left the pool.
    mutating func releaseSlots<C: Collection<UInt32>>(_ slots: C) {
        freeSlots.append(contentsOf: slots)
    }

    /// The idle stacks to give back now, oldest first: those beyond `cap`, then, when `force` is set or
    /// `period` has passed since the last pass, those idle for `period` or longer, keeping `floor`.
    mutating func expire(
        now: Int64, period: Int64, floor: Int, cap: Int, force: Bool
    ) -> (overCap: [UInt32], trimmed: [UInt32]) {
        let overCap = Swift.max(0, idle.count - cap)
        var trimmed = overCap
        if force || now &- lastTrim >= period {
            lastTrim = now
            while trimmed < idle.count, idle.count - trimmed > floor, now &- idle[trimmed].since >= period {
                trimmed += 1
            }
        }
        guard trimmed > 0 else { return ([], []) }
        let victims = idle[..<trimmed].map(\.slot)
        idle.removeFirst(trimmed)
        return (Array(victims.prefix(overCap)), Array(victims.dropFirst(overCap)))
    }

    /// Slot ids holding a stack (handed out or idle).
    var heldSlots: [UInt32] {
        var isFree = [Bool](repeating: false, count: nextSlot)
        for slot in freeSlots { isFree[Int(slot)] = true }
        return (0..<nextSlot).lazy.filter { !isFree[$0] }.map { UInt32($0) }
    }
}
