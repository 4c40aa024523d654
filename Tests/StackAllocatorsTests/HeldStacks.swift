import Glibc
import StackAllocators

/// Stacks a test holds, in memory of their own (`Stack` is not copyable), released from the last.
final class HeldStacks {
    private let storage: UnsafeMutablePointer<Stack>
    private(set) var count: Int

    init(_ count: Int, from allocator: some StackAllocator, request: StackRequest = StackRequest(usableSize: 64 << 10)) throws {
        storage = .allocate(capacity: count)
        self.count = 0
        for index in 0..<count {
            (storage + index).initialize(to: try allocator.allocate(request))
            self.count += 1
        }
    }

    deinit {
        storage.deinitialize(count: count)
        storage.deallocate()
    }

    var bases: [UInt] { (0..<count).map { storage[$0].descriptor.layout.base } }

    var layouts: [StackLayout] { (0..<count).map { storage[$0].descriptor.layout } }

    /// Whether every byte of every one reads zero.
    var allZero: Bool {
        (0..<count).allSatisfy { UnsafeRawBufferPointer(start: storage[$0].usableBottom, count: storage[$0].usableSize).allSatisfy { $0 == 0 } }
    }

    /// Writes the top byte of each: one resident page per stack.
    func touchTops() {
        for index in 0..<count { (storage[index].top - 1).storeBytes(of: 1, as: UInt8.self) }
    }

    /// Writes every byte of each.
    func fill() {
        for index in 0..<count { memset(storage[index].usableBottom, 0xAB, storage[index].usableSize) }
    }

    /// Releases the last `stacks`.
    func release(_ stacks: Int) {
        count -= stacks
        (storage + count).deinitialize(count: stacks)
    }
}
