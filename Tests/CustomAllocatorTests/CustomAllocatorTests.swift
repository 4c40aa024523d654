import StackAllocators
import StackTestSupport
import Testing

// `CountingHeapAllocator` (Tests/StackTestSupport) is a third-party allocator: page-aligned heap memory,
// no guard, written against the public API only. The scheduler's tests plug the same one into fibers.

@Suite("A custom allocator from outside the package")
struct CustomAllocatorTests {
    @Test("It allocates usable stacks and each is released exactly once")
    func allocateAndRelease() throws {
        let allocator = CountingHeapAllocator()
        do {
            let first = try allocator.allocate(StackRequest(usableSize: 32 << 10))
            let second = try allocator.allocate(StackRequest(usableSize: 10_000))
            #expect(first.usableSize == 32 << 10)
            #expect(second.usableSize == 12_288)
            #expect(first.guardMechanism == .none)
            (first.top - 1).storeBytes(of: 7, as: UInt8.self)
            #expect((first.top - 1).load(as: UInt8.self) == 7)
            #expect(allocator.allocated.load(ordering: .relaxed) == 2)
            first.release()
            #expect(allocator.released.load(ordering: .relaxed) == 1)
            _ = consume second  // dropping is releasing
        }
        #expect(allocator.released.load(ordering: .relaxed) == 2)
        #expect(allocator.live.withLock { $0.isEmpty })
    }

    @Test("Its errors are the package's typed errors")
    func errors() {
        #expect(throws: StackError.self) { _ = try CountingHeapAllocator().allocate(StackRequest(usableSize: 0)) }
        #expect(throws: StackError.self) { _ = try CountingHeapAllocator(limit: 0).allocate(StackRequest()) }
    }
}
