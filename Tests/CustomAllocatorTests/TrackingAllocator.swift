// The decorator example of the `StackAllocator` documentation: counts what passes through, hands the
// work to any inner allocator.
import StackAllocators
import Synchronization

/// Counts the stacks of an inner allocator that are live, and the most ever live at once.
///
/// A decorator cannot hand the inner allocator's `Stack` to its caller (the caller's stack must release
/// through the decorator), so it keeps the inner `Stack` in a box keyed by usable bottom and returns a
/// `Stack` of its own for the same memory; its `release` drops the box, which releases the inner stack.
final class TrackingAllocator: StackAllocator {
    private final class Box: @unchecked Sendable {
        let stack: Stack
        init(_ stack: consuming Stack) { self.stack = stack }
    }

    private let inner: any StackAllocator
    private let boxes = Mutex<[UInt: Box]>([:])
    let live = Atomic<Int>(0)
    let peak = Atomic<Int>(0)

    init(wrapping inner: any StackAllocator) { self.inner = inner }

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let box = Box(try inner.allocate(request))
        let descriptor = box.stack.descriptor
        boxes.withLock { $0[descriptor.layout.usableBottom] = box }
        let now = live.add(1, ordering: .relaxed).newValue
        peak.max(now, ordering: .relaxed)
        return Stack(descriptor: descriptor, allocator: self)
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        // Only a live stack of ours, with the inner allocator's exact descriptor, is given back.
        let box = boxes.withLock { boxes -> Box? in
            guard let box = boxes[descriptor.layout.usableBottom], box.stack.descriptor == descriptor else { return nil }
            boxes[descriptor.layout.usableBottom] = nil
            return box
        }
        guard box != nil else { return }
        live.subtract(1, ordering: .relaxed)
        // Dropping the last reference to the box releases the inner stack, which ends its guard's
        // registration.
    }
}
