/// A stack a pool holds: the inner allocator's `Stack`, owned by the pool, and the descriptor of the
/// pooled `Stack` handed out for it (the inner one with the slot id as its tag).
struct PoolSlot: ~Copyable {
    /// The inner stack; dropping it gives the memory back to the inner allocator.
    let inner: Stack
    /// What the pool hands out for this slot.
    let lent: StackDescriptor
}

/// A pool's stacks by slot id, in fixed chunks that never move: a thread holding a slot id reads its
/// descriptor without a lock. Chunks are added, and slots filled and emptied, under the pool's depot
/// lock only; a reader obtained its id through that lock or from a `Stack` handed to it, either of which
/// orders the write before the read. A slot is emptied by whoever removed its id from the depot, under the
/// lock. Hence `@unchecked Sendable`: the pool's lock and ownership rules, not the type, make it safe.
struct PoolSlotTable: ~Copyable, @unchecked Sendable {
    /// Slots per chunk.
    static let chunkSize = 1 << 12
    /// Chunks at most: 16,777,216 slots in all.
    static let maximumChunks = 1 << 12
    /// Most slots a table can hold.
    static var capacity: Int { chunkSize * maximumChunks }

    private let directory: UnsafeMutablePointer<UnsafeMutablePointer<PoolSlot>?>

    init() {
        directory = .allocate(capacity: Self.maximumChunks)
        directory.initialize(repeating: nil, count: Self.maximumChunks)
    }

    deinit {
        // The pool empties every slot first; chunks hold no initialized slot here.
        for index in 0..<Self.maximumChunks {
            directory[index]?.deallocate()
        }
        directory.deallocate()
    }

    /// The descriptor handed out for `slot`, which must be filled.
    @inline(__always)
    func lent(_ slot: UInt32) -> StackDescriptor {
        address(of: slot).pointee.lent
    }

    /// The inner descriptor of `slot`, which must be filled.
    func inner(_ slot: UInt32) -> StackDescriptor {
        address(of: slot).pointee.inner.descriptor
    }

    /// Stores `inner` in the empty `slot` (under the depot lock), with the descriptor to hand out for it.
    func fill(_ slot: UInt32, with inner: consuming Stack) {
        let chunk = Int(slot) >> 12
        if directory[chunk] == nil {
            directory[chunk] = .allocate(capacity: Self.chunkSize)
        }
        let descriptor = inner.descriptor
        let lent = StackDescriptor(
            layout: descriptor.layout, guardMechanism: descriptor.guardMechanism, node: descriptor.node,
            tag: UInt(slot))
        address(of: slot).initialize(to: PoolSlot(inner: inner, lent: lent))
    }

    /// Empties `slot`, returning its inner stack (drop it to give it back to the inner allocator).
    func empty(_ slot: UInt32) -> Stack {
        address(of: slot).move().inner
    }

    @inline(__always)
    private func address(of slot: UInt32) -> UnsafeMutablePointer<PoolSlot> {
        directory[Int(slot) >> 12].unsafelyUnwrapped + Int(slot & UInt32(Self.chunkSize - 1))
    }
}
