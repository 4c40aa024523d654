import Glibc
import StackAllocators
import Synchronization
import Testing

/// A third-party allocator written against the public API only: plain malloc'd memory aligned to a
/// page, no guard, counting what it hands out and takes back.
final class CountingHeapAllocator: StackAllocator {
    let allocated = Atomic<Int>(0)
    let released = Atomic<Int>(0)
    let handedOut = Mutex<Set<UInt>>([])

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let sizes = try StackSizes(usable: request.usableSize, guard: 0)
        var memory: UnsafeMutableRawPointer?
        let result = posix_memalign(&memory, sizes.pageSize, sizes.total)
        guard result == 0, let memory else {
            throw .capabilityMissing("heap memory", fix: "posix_memalign returned \(result)")
        }
        let layout = try StackLayout(base: UInt(bitPattern: memory), sizes: sizes)
        allocated.add(1, ordering: .relaxed)
        handedOut.withLock { _ = $0.insert(layout.base) }
        return Stack(descriptor: StackDescriptor(layout: layout, guardMechanism: .none), allocator: self)
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        let known = handedOut.withLock { $0.remove(descriptor.layout.base) != nil }
        precondition(known, "released a stack this allocator did not hand out")
        free(UnsafeMutableRawPointer(bitPattern: descriptor.layout.base))
        released.add(1, ordering: .relaxed)
    }
}

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
        #expect(allocator.handedOut.withLock { $0.isEmpty })
    }

    @Test("Its errors are the package's typed errors")
    func errors() {
        #expect(throws: StackError.self) { _ = try CountingHeapAllocator().allocate(StackRequest(usableSize: 0)) }
    }
}
