import Synchronization

/// A stack a pool holds: the inner allocator's `Stack`, owned by the pool.
struct PoolSlot: ~Copyable {
    /// The inner stack; dropping it gives the memory back to the inner allocator.
    let inner: Stack
}

/// A pool's stacks by slot id, in fixed chunks that never move: a thread holding a slot id reads its
/// descriptor without a lock. Chunks are added, and slots filled and emptied, under the pool's depot
/// lock only; a reader obtained its id through that lock or from a `Stack` handed to it, either of which
/// orders the write before the read. A slot is emptied by whoever removed its id from the depot, under the
/// lock. Hence `@unchecked Sendable`: the pool's lock and ownership rules, not the type, make it safe.
///
/// Each slot also has a lending state, an atomic word on a cache line of its own (two threads using
/// neighbouring slots do not share a line): a generation, bumped each time the slot is handed out, whether
/// it is handed out now, and whether a `close()` of the pool counted it as an orphan. The pooled `Stack`'s
/// tag carries the slot id (low 32 bits) and the generation (high 32). Only the thread that took the slot
/// from a cache or the depot writes it when lending (a plain store). Until the pool's first `close()` a
/// release writes it with a plain store too (`settleOpen`); from then on the release and `close()` race on
/// it, so both use compare-and-exchange, and exactly one of them decides whether the release uncounts an
/// orphan.
struct PoolSlotTable: ~Copyable, @unchecked Sendable {
    /// Slots per chunk.
    static let chunkSize = 1 << 12
    /// Chunks at most: 16,777,216 slots in all.
    static let maximumChunks = 1 << 12
    /// Most slots a table can hold.
    static var capacity: Int { chunkSize * maximumChunks }

    private let directory: UnsafeMutablePointer<UnsafeMutablePointer<PoolSlot>?>
    /// Lending states, chunked like `directory`, one per `stateStride` words: generation << 2 | orphaned
    /// << 1 | handed out.
    private let states: UnsafeMutablePointer<UnsafeMutablePointer<Atomic<UInt64>>?>
    /// Words per lending state: a 64-byte cache line.
    private static let stateStride = 8
    private static let lent: UInt64 = 1
    private static let orphaned: UInt64 = 2

    /// What `settle` found.
    enum Settled {
        /// Handed out and not orphaned: now idle.
        case returned
        /// Handed out and counted as an orphan: now idle, and the caller uncounts it.
        case orphaned
    }

    init() {
        directory = .allocate(capacity: Self.maximumChunks)
        directory.initialize(repeating: nil, count: Self.maximumChunks)
        states = .allocate(capacity: Self.maximumChunks)
        states.initialize(repeating: nil, count: Self.maximumChunks)
    }

    deinit {
        // The pool empties every slot first; chunks hold no initialized slot here.
        for index in 0..<Self.maximumChunks {
            directory[index]?.deallocate()
            if let chunk = states[index] {
                chunk.deinitialize(count: Self.chunkSize * Self.stateStride)
                chunk.deallocate()
            }
        }
        directory.deallocate()
        states.deallocate()
    }

    /// Marks the filled, idle `slot` handed out (by the one thread that took it from a cache or the
    /// depot) and returns the descriptor of the pooled stack: the inner one, tagged with the slot id and
    /// the new generation.
    @inline(__always)
    func lend(_ slot: UInt32) -> StackDescriptor {
        let state = lendingState(of: slot).unsafelyUnwrapped
        let generation = UInt64(UInt32(truncatingIfNeeded: state.pointee.load(ordering: .relaxed) >> 2) &+ 1)
        state.pointee.store(generation << 2 | Self.lent, ordering: .relaxed)
        let inner = address(of: slot).pointee.inner.descriptor
        return StackDescriptor(
            layout: inner.layout, guardMechanism: inner.guardMechanism, node: inner.node,
            tag: UInt(generation) << 32 | UInt(slot))
    }

    /// Marks idle the slot of a pooled stack coming back, whose `tag` is the one `lend` returned: a
    /// pooled stack comes back once, so the slot is handed out for that generation, orphaned or not.
    @inline(__always)
    func settle(tag: UInt) -> Settled {
        let state = lendingState(of: UInt32(truncatingIfNeeded: tag)).unsafelyUnwrapped
        let idle = UInt64(tag >> 32) << 2
        if state.pointee.compareExchange(expected: idle | Self.lent, desired: idle, ordering: .releasing).exchanged {
            return .returned
        }
        // Only a `close()` changes a handed-out slot, and only to orphaned; nobody changes it after that.
        precondition(
            state.pointee.load(ordering: .relaxed) == idle | Self.lent | Self.orphaned,
            "a pooled stack came back whose slot is not handed out: its Stack was copied as raw memory")
        state.pointee.store(idle, ordering: .releasing)
        return .orphaned
    }

    /// `settle` for a release that no `close()` can race with (see `PoolCore.takeBack`): a load and a
    /// store, no locked instruction. The store publishes what the release did before it. A slot a
    /// `close()` orphaned anyway (its process barrier failed) goes through `settle`.
    @inline(__always)
    func settleOpen(tag: UInt) -> Settled {
        let state = lendingState(of: UInt32(truncatingIfNeeded: tag)).unsafelyUnwrapped
        let idle = UInt64(tag >> 32) << 2
        guard state.pointee.load(ordering: .relaxed) == idle | Self.lent else { return settle(tag: tag) }
        state.pointee.store(idle, ordering: .releasing)
        return .returned
    }

    /// Marks every slot below `count` that is handed out and not yet orphaned as orphaned; returns how
    /// many it marked. Called under the depot lock (chunks are added under it).
    func orphanLent(below count: Int) -> Int {
        var marked = 0
        for slot in 0..<UInt32(count) {
            guard let state = lendingState(of: slot) else { continue }
            var current = state.pointee.load(ordering: .acquiring)
            while current & Self.lent != 0, current & Self.orphaned == 0 {
                let (exchanged, found) = state.pointee.compareExchange(
                    expected: current, desired: current | Self.orphaned, ordering: .acquiringAndReleasing)
                if exchanged {
                    marked += 1
                    break
                }
                current = found
            }
        }
        return marked
    }

    /// The inner descriptor of `slot`, which must be filled.
    func inner(_ slot: UInt32) -> StackDescriptor {
        address(of: slot).pointee.inner.descriptor
    }

    /// Stores `inner` in the empty `slot` (under the depot lock); the slot is idle.
    func fill(_ slot: UInt32, with inner: consuming Stack) {
        let chunk = Int(slot) >> 12
        if directory[chunk] == nil {
            let words = Self.chunkSize * Self.stateStride
            let lending = UnsafeMutableRawPointer.allocate(byteCount: words * 8, alignment: 64)
                .bindMemory(to: Atomic<UInt64>.self, capacity: words)
            for index in 0..<words { (lending + index).initialize(to: Atomic(0)) }
            states[chunk] = lending
            directory[chunk] = .allocate(capacity: Self.chunkSize)
        }
        address(of: slot).initialize(to: PoolSlot(inner: inner))
    }

    /// Empties `slot`, returning its inner stack (drop it to give it back to the inner allocator).
    func empty(_ slot: UInt32) -> Stack {
        address(of: slot).move().inner
    }

    /// The lending state of `slot`; nil for an id no stack of this table ever had.
    @inline(__always)
    private func lendingState(of slot: UInt32) -> UnsafeMutablePointer<Atomic<UInt64>>? {
        guard Int(slot) < Self.capacity, let chunk = states[Int(slot) >> 12] else { return nil }
        return chunk + Int(slot & UInt32(Self.chunkSize - 1)) * Self.stateStride
    }

    @inline(__always)
    private func address(of slot: UInt32) -> UnsafeMutablePointer<PoolSlot> {
        directory[Int(slot) >> 12].unsafelyUnwrapped + Int(slot & UInt32(Self.chunkSize - 1))
    }
}
