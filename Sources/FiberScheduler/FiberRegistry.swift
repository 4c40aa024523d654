import Synchronization

/// One worker's live fibers, for `FiberScheduler.fibers` and for cancelling the suspended ones.
///
/// An array of unowned references in which each fiber knows its slot (in its control block): adding and
/// removing are O(1) under a lock that only the worker and readers of `fibers` take, a fiber costs one
/// word here, and the storage shrinks as fibers go, so a burst of a million fibers leaves nothing behind.
/// A fiber removes itself in its deinit, under the lock, so a reader never sees a freed fiber.
final class FiberRegistry: Sendable {
    private let slots = Lock<[Unmanaged<Fiber>]>([])

    /// Adds `fiber`, which must remove itself before it is freed.
    func add(_ fiber: Fiber) {
        slots.withLock { slots in
            fiber.registrySlot = slots.count
            slots.append(.passUnretained(fiber))
        }
    }

    /// Removes `fiber`: the last fiber takes its slot.
    func remove(_ fiber: Fiber) {
        slots.withLock { slots in
            let slot = fiber.registrySlot
            let last = slots.removeLast()
            if slot < slots.count {
                slots[slot] = last
                last.takeUnretainedValue().registrySlot = slot
            }
            if slots.capacity > 1024, slots.count * 4 < slots.capacity {
                var smaller: [Unmanaged<Fiber>] = []
                smaller.reserveCapacity(slots.count * 2)
                smaller.append(contentsOf: slots)
                slots = smaller
            }
        }
    }

    /// What `body` makes of every fiber, taken under the lock (the fibers cannot go meanwhile).
    func map<T>(_ body: (Fiber) -> T) -> [T] {
        slots.withLock { slots in slots.map { body($0.takeUnretainedValue()) } }
    }
}
