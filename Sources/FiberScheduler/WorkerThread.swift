import Glibc
import SystemPackage
import StackAllocators

/// The POSIX thread under a worker: start, name, join.
enum WorkerThread {
    /// Starts a thread running `body`. Throws `.threadCreationFailed` with pthread_create's error.
    static func spawn(_ body: @escaping () -> Void) throws(StackError) -> pthread_t {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw .threadCreationFailed(Errno(rawValue: result))
        }
        return thread
    }

    /// Waits for `thread` to end.
    static func join(_ thread: pthread_t) {
        let result = pthread_join(thread, nil)
        precondition(result == 0, "pthread_join of a worker failed with \(result): the thread id is corrupt")
    }

    /// Names the calling thread (shown by ps, top, gdb; the kernel keeps 15 bytes).
    static func setName(_ name: String) -> Result<Void, Errno> {
        Syscall.setThreadName(name)
    }

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
}
