import Glibc
@_spi(Benchmarks) import OverflowDetection
import StackAllocators
import Synchronization
import Testing

/// An allocator whose stacks have no hardware guard, only a canary: the pattern is written when a
/// stack is made and checked when it comes back, as an allocator of packed huge-page stacks does.
private final class CanaryStackAllocator: StackAllocator {
    let corruptReleases = Mutex<[StackError]>([])

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let sizes = try StackSizes(usableSize: request.usableSize, guardSize: 0)
        let memory = mmap(nil, sizes.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let memory, memory != MAP_FAILED else { throw .mappingFailed(.noMemory, size: sizes.total) }
        let layout = try StackLayout(base: UInt(bitPattern: memory), sizes: sizes)
        Canary.write(layout)
        try GuardRegistry.register(layout)  // label only: an empty guard never matches a fault
        return Stack(descriptor: StackDescriptor(layout: layout, guardMechanism: .canary), allocator: self)
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        do {
            try Canary.check(descriptor.layout)
        } catch {
            corruptReleases.withLock { $0.append(error) }
        }
        GuardRegistry.unregister(descriptor.layout)
        precondition(munmap(UnsafeMutableRawPointer(bitPattern: descriptor.layout.base), descriptor.layout.sizes.total) == 0)
    }
}

@Suite("Stack canaries")
struct StackCanaryTests {
    @Test("checkCanary passes on a clean canary stack and names the fiber once its canary is overwritten")
    func checkCanary() throws {
        let allocator = CanaryStackAllocator()
        let stack = try allocator.allocate(StackRequest(usableSize: 64 << 10))
        #expect(stack.guardMechanism == .canary)
        let labelled = stack.setOverflowLabel("job-8@worker-2")
        #expect(labelled)
        try stack.checkCanary()
        stack.usableBottom.storeBytes(of: 0, as: UInt8.self)
        #expect(throws: StackError.canaryCorrupted(stack: stack.descriptor.layout, label: "job-8@worker-2")) {
            try stack.checkCanary()
        }
        let layout = stack.descriptor.layout
        stack.release()
        #expect(allocator.corruptReleases.withLock { $0 } == [.canaryCorrupted(stack: layout, label: "job-8@worker-2")])
    }

    @Test("A clean canary stack releases without an error; other mechanisms are not checked")
    func cleanRelease() throws {
        let allocator = CanaryStackAllocator()
        try allocator.allocate(StackRequest(usableSize: 64 << 10)).release()
        #expect(allocator.corruptReleases.withLock { $0 }.isEmpty)
        let guarded = try MmapStackAllocator().allocate(StackRequest(usableSize: 64 << 10))
        guarded.usableBottom.storeBytes(of: 0, as: UInt8.self)
        #expect(throws: Never.self) { try guarded.checkCanary() }
    }
}
