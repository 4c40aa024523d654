import CStackSupport
import Glibc
import GuardPages
import SystemPackage

/// Runs code on a given stack before fibers exist: a pthread whose stack *is* the usable range
/// (`pthread_attr_setstack`), so deep recursion on it reaches the stack's guard. For tests and
/// `fiberstacks verify`.
///
/// glibc keeps the thread's control block and static TLS at the top of that range (a few KiB).
package enum StackThread {
    /// Runs `body` on a new thread named `name` whose stack is `layout`'s usable range, and waits for it.
    package static func run(on layout: StackLayout, name: String, _ body: @escaping @Sendable () -> Void) throws(StackError) {
        var attributes = pthread_attr_t()
        var code = pthread_attr_init(&attributes)
        guard code == 0 else { throw failure(code, "pthread_attr_init") }
        defer { pthread_attr_destroy(&attributes) }
        code = pthread_attr_setstack(&attributes, UnsafeMutableRawPointer(bitPattern: layout.usableBottom), layout.sizes.usableSize)
        guard code == 0 else { throw failure(code, "pthread_attr_setstack (needs at least PTHREAD_STACK_MIN bytes)") }
        let context = Unmanaged.passRetained(Job(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        code = pthread_create(&thread, &attributes, { context in
            let job = Unmanaged<Job>.fromOpaque(context!).takeRetainedValue()
            _ = Syscall.setThreadName(job.name)  // cosmetic: the diagnostic falls back to the thread id
            job.body()
            return nil
        }, context)
        guard code == 0 else {
            Unmanaged<Job>.fromOpaque(context).release()
            throw failure(code, "pthread_create")
        }
        pthread_join(thread, nil)
    }

    /// Uses a little more than `kibibytes` KiB of the calling thread's stack (1 KiB frames, each written).
    package static func use(kibibytes: Int) -> Int {
        Int(fs_recurse_kib(kibibytes))
    }

    /// Recurses with 1 KiB frames until the calling thread's stack overflows.
    package static func overflow() -> Never {
        _ = fs_recurse_kib(Int.max)
        fatalError("the stack did not overflow")
    }

    private final class Job: Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    private static func failure(_ code: Int32, _ call: String) -> StackError {
        code == EINVAL
            ? .invalidRequest("a thread on a given stack (\(call): EINVAL)", fix: "give the stack at least 16 KiB")
            : .threadCreationFailed(Errno(rawValue: code))
    }
}
