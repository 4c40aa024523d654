// The custom allocator of README.md ("Plugging in your own allocator"), word for word: compiled and run
// here so the example cannot rot.
import Glibc
import StackAllocators
import Synchronization

/// Stacks from mmap; `Stack.guarded` installs the guard, binds, prefaults and registers the guard.
final class GuardedMmapAllocator: StackAllocator {
    private let live = Mutex<Set<UInt>>([])  // usable bottoms of the stacks handed out

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let sizes = try StackSizes(usableSize: request.usableSize, guardSize: request.guardSize)
        let memory = mmap(nil, sizes.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let memory, memory != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw StackError(message: "mmap of \(sizes.total) bytes failed", fix: "check `ulimit -v`", errno: errno)
        }
        do throws(StackError) {
            let layout = try StackLayout(base: UInt(bitPattern: memory), sizes: sizes)
            let stack = try Stack.guarded(layout, request: request, mechanism: .protNone, allocator: self)
            live.withLock { _ = $0.insert(layout.usableBottom) }
            return stack
        } catch {
            precondition(munmap(memory, sizes.total) == 0, "munmap of our own mapping failed: errno \(errno)")
            throw error
        }
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        // Refuse what is not a live stack of ours: a second release, a descriptor we never made.
        guard live.withLock({ $0.remove(descriptor.layout.usableBottom) }) != nil else { return }
        let unmapped = munmap(UnsafeMutableRawPointer(bitPattern: descriptor.layout.base), descriptor.layout.sizes.total)
        precondition(unmapped == 0, "munmap of our own mapping failed: errno \(errno)")
    }
}
