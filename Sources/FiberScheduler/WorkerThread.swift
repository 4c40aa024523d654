import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import SystemPackage

/// The POSIX thread under a worker: start, name, join.
enum WorkerThread {
    /// Starts a thread running `body`. Throws `.systemCallFailed` with pthread_create's error.
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
            if result == EAGAIN, let exhausted = stackOverLimit() { throw exhausted }
            throw .threadCreationFailed(Errno(rawValue: result))
        }
        return thread
    }

    /// The error when `ulimit -v` or `ulimit -d` explains an EAGAIN: pthread_create reports a thread stack
    /// the kernel refused (ENOMEM) as EAGAIN, like a thread limit. Nil when no limit is set or a default
    /// thread stack still fits under each.
    private static func stackOverLimit() -> StackError? {
        var stack = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_STACK.rawValue), &stack) == 0, let limits = try? MappingLimit.current()
        else { return nil }
        // glibc gives a new thread RLIMIT_STACK bytes of stack, or 8 MiB when that is unlimited (RLIM_INFINITY).
        let stackSize = stack.rlim_cur == rlim_t.max ? 8 << 20 : Int(stack.rlim_cur)
        return limits.first { stackSize > $0.room }.map { .threadStackOverLimit($0, stackSize: stackSize) }
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
