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
/// Each slot also has a lending state, an atomic word: a generation, bumped each time the slot is handed
/// out, and whether it is handed out now. The pooled `Stack`'s tag carries the slot id (low 32 bits) and
/// the generation (high 32): a release is honoured only when it takes the slot from handed out to idle
/// for that generation, so a stack released twice, or a stale or made-up descriptor, never puts a slot
/// into a cache a second time.
struct PoolSlotTable: ~Copyable, @unchecked Sendable {
    /// Slots per chunk.
    static let chunkSize = 1 << 12
    /// Chunks at most: 16,777,216 slots in all.
    static let maximumChunks = 1 << 12
    /// Most slots a table can hold.
    static var capacity: Int { chunkSize * maximumChunks }

    private let directory: UnsafeMutablePointer<UnsafeMutablePointer<PoolSlot>?>
    /// Lending states, chunked like `directory`: generation << 1 | handed out.
    private let states: UnsafeMutablePointer<UnsafeMutablePointer<Atomic<UInt64>>?>

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
                chunk.deinitialize(count: Self.chunkSize)
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
        let generation = UInt64(UInt32(truncatingIfNeeded: state.pointee.load(ordering: .relaxed) >> 1) &+ 1)
        state.pointee.store(generation << 1 | 1, ordering: .relaxed)
        let inner = address(of: slot).pointee.inner.descriptor
        return StackDescriptor(
            layout: inner.layout, guardMechanism: inner.guardMechanism, node: inner.node,
            tag: UInt(generation) << 32 | UInt(slot))
    }

    /// Takes back the slot of a released pooled stack: its id if `descriptor` is exactly what `lend`
    /// returned for it and it is still handed out (now it is not); nil otherwise, with nothing changed.
    func reclaim(_ descriptor: StackDescriptor) -> UInt32? {
        let slot = UInt32(truncatingIfNeeded: descriptor.tag)
        guard let state = lendingState(of: slot) else { return nil }
        let lent = UInt64(descriptor.tag >> 32) << 1 | 1
        guard descriptor.tag >> 32 <= UInt32.max,
            state.pointee.compareExchange(expected: lent, desired: lent & ~1, ordering: .acquiringAndReleasing).exchanged
        else { return nil }
        // Handed out until the exchange: filled. A descriptor with the right tag but other addresses
        // is refused, and the slot stays handed out to its real owner.
        let inner = address(of: slot).pointee.inner.descriptor
        guard inner.layout == descriptor.layout, inner.guardMechanism == descriptor.guardMechanism,
            inner.node == descriptor.node
        else {
            state.pointee.store(lent, ordering: .relaxed)
            return nil
        }
        return slot
    }

    /// The inner descriptor of `slot`, which must be filled.
    func inner(_ slot: UInt32) -> StackDescriptor {
        address(of: slot).pointee.inner.descriptor
    }

    /// Stores `inner` in the empty `slot` (under the depot lock); the slot is idle.
    func fill(_ slot: UInt32, with inner: consuming Stack) {
        let chunk = Int(slot) >> 12
        if directory[chunk] == nil {
            let lending = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: Self.chunkSize)
            for index in 0..<Self.chunkSize { (lending + index).initialize(to: Atomic(0)) }
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
        return chunk + Int(slot & UInt32(Self.chunkSize - 1))
    }

    @inline(__always)
    private func address(of slot: UInt32) -> UnsafeMutablePointer<PoolSlot> {
        directory[Int(slot) >> 12].unsafelyUnwrapped + Int(slot & UInt32(Self.chunkSize - 1))
    }
}
