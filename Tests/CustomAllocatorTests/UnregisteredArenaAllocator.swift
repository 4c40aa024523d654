import Glibc
import StackAllocators
import Synchronization

/// An allocator that makes its own mprotect guards and never registers them, nor uses `Stack.guarded`:
/// the scheduler must register its stacks itself, or an overflow on them would be a bare SIGSEGV.
final class UnregisteredArenaAllocator: StackAllocator {
    private let live = Mutex<Set<UInt>>([])
    /// Released stacks, still mapped until the arena goes: nothing else in the process can be mapped (and
    /// registered) at their addresses while a test reads the registry back.
    private let released = Mutex<[StackLayout]>([])

    deinit {
        for layout in released.withLock({ $0 }) {
            precondition(munmap(UnsafeMutableRawPointer(bitPattern: layout.base), layout.sizes.total) == 0)
        }
    }

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let sizes = try StackSizes(usableSize: request.usableSize, guardSize: max(request.guardSize, 4096))
        let memory = mmap(nil, sizes.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let memory, memory != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw StackError(message: "mmap failed", errno: errno)
        }
        guard mprotect(memory, sizes.guardSize, PROT_NONE) == 0 else {
            let error = errno
            precondition(munmap(memory, sizes.total) == 0)
            throw StackError(message: "mprotect failed", errno: error)
        }
        let layout = try StackLayout(base: UInt(bitPattern: memory), sizes: sizes)
        live.withLock { _ = $0.insert(layout.usableBottom) }
        return Stack(descriptor: StackDescriptor(layout: layout, guardMechanism: .protNone), allocator: self)
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        guard live.withLock({ $0.remove(descriptor.layout.usableBottom) }) != nil else { return }
        released.withLock { $0.append(descriptor.layout) }
    }
}
