/// The stacks an allocator has handed out and not yet taken back, keyed by usable bottom: what a
/// release is checked against. Each stack gets a serial, never reused, in its descriptor's `tag`.
///
/// A release is honoured only for a descriptor equal to a live one (addresses, sizes, guard, node and
/// serial), and the record goes at once: a second release of the same stack, or of a descriptor the
/// allocator never made, finds nothing. A stale descriptor of a released stack does not match the stack
/// that reuses its addresses (another serial). Thread-safe: one mutex and one hash lookup per operation.
final class LiveStacks<Extra: Sendable>: Sendable {
    private struct Entry {
        let descriptor: StackDescriptor
        let extra: Extra
    }

    private struct State {
        var entries: [UInt: Entry] = [:]
        var nextSerial: UInt = 1
    }

    private let state = Lock(State())
    /// Entries whose table is kept when all its stacks are released.
    private static var keptCapacity: Int { 1024 }

    /// Records a stack about to be handed out, with what the allocator needs back at release; returns
    /// `descriptor` with its serial as the tag.
    func add(_ descriptor: StackDescriptor, _ extra: Extra) -> StackDescriptor {
        state.withLock { state in
            let serial = state.nextSerial
            state.nextSerial += 1
            let recorded = StackDescriptor(
                layout: descriptor.layout, guardMechanism: descriptor.guardMechanism, node: descriptor.node, tag: serial)
            state.entries[recorded.layout.usableBottom] = Entry(descriptor: recorded, extra: extra)
            return recorded
        }
    }

    /// Forgets the live stack `descriptor` names and returns its extra; nil (nothing changes) when no
    /// live stack is exactly `descriptor`.
    func remove(_ descriptor: StackDescriptor) -> Extra? {
        state.withLock { state -> Extra? in
            let key = descriptor.layout.usableBottom
            guard let entry = state.entries[key], entry.descriptor == descriptor else { return nil }
            state.entries[key] = nil
            // A large table is freed once empty (its memory would outlive the stacks); a small one is kept,
            // so allocating and releasing one stack at a time never reallocates it.
            if state.entries.isEmpty, state.entries.capacity > Self.keptCapacity { state.entries = [:] }
            return entry.extra
        }
    }
}

extension LiveStacks where Extra == Void {
    /// Records a stack that needs nothing back at release.
    func add(_ descriptor: StackDescriptor) -> StackDescriptor { add(descriptor, ()) }
}
