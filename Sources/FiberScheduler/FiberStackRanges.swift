import GuardPages
import Logging
import StackAllocators

/// The memory (guard and usable bytes) of every live fiber's stack from an allocator outside this package,
/// process-wide: a stack that overlaps one of them is refused before two fibers run on the same memory (an
/// allocator that hands a stack out twice, or carves stacks closer together than their size).
///
/// Each stack is filed under every 2 MiB block of addresses it touches, so a check reads only the stacks
/// near its own, whatever the number of fibers. One lock, taken once when such a fiber is made and once
/// when it is freed.
package enum FiberStackRanges {
    private static let blockShift = 21
    private static let blocks = Lock<[UInt: [StackLayout]]>([:])
    /// Blocks whose table is kept when every stack is gone.
    private static var keptCapacity: Int { 1024 }

    /// Records `stack`, made by `allocator`; throws `.stackOverlapsLiveStack` (and records nothing) when
    /// it overlaps a recorded stack.
    package static func insert(_ stack: StackLayout, allocator: any StackAllocator) throws(StackError) {
        let overlapped = blocks.withLock { blocks -> StackLayout? in
            for key in blockKeys(of: stack) {
                if let live = blocks[key]?.first(where: { $0.base < stack.top && stack.base < $0.top }) { return live }
            }
            for key in blockKeys(of: stack) { blocks[key, default: []].append(stack) }
            return nil
        }
        if let overlapped {
            throw .stackOverlapsLiveStack(stack: stack, live: overlapped, allocator: "\(type(of: allocator))")
        }
    }

    /// Keeps a stack `insert` refused for overlapping a live one, never releasing it: its descriptor may be
    /// the live stack's own (memory handed out twice), and the allocator, taking it back, would free or hand
    /// out again memory a fiber runs on. The allocator counts it as out for good; the error says why.
    package static func keep(_ stack: consuming Stack, logger: Logger) {
        logger.error(
            "a stack that overlaps a live fiber's stack is kept, never released: releasing it could free the live fiber's memory",
            metadata: ["stack": "\(stack.descriptor.layout)"])
        let cell = UnsafeMutablePointer<Stack>.allocate(capacity: 1)
        cell.initialize(to: stack)
        kept.withLock { $0.append(KeptStack(cell: cell)) }
    }

    /// The stacks `keep` holds, for the life of the process (reachable, so not a leak to a leak checker).
    private static let kept = Lock<[KeptStack]>([])

    /// A kept stack's cell: sendable because nothing reads it again.
    private struct KeptStack: @unchecked Sendable {
        let cell: UnsafeMutablePointer<Stack>
    }

    /// Forgets `stack`, recorded by `insert`: before it goes back to its allocator, which may hand it out
    /// again at once.
    package static func remove(_ stack: StackLayout) {
        blocks.withLock { blocks in
            for key in blockKeys(of: stack) {
                guard let index = blocks[key]?.firstIndex(of: stack) else { continue }
                blocks[key]!.swapAt(index, blocks[key]!.count - 1)
                blocks[key]!.removeLast()
                if blocks[key]!.isEmpty { blocks[key] = nil }
            }
            if blocks.isEmpty, blocks.capacity > keptCapacity { blocks = [:] }
        }
    }

    /// The 2 MiB blocks `stack` touches, guard included.
    private static func blockKeys(of stack: StackLayout) -> ClosedRange<UInt> {
        (stack.base >> blockShift)...((stack.top - 1) >> blockShift)
    }
}
