import CNuma
import Glibc
import StackAllocators

/// A check that could not run, and why.
package struct CheckError: Error, CustomStringConvertible {
    package let description: String
}

/// Runs `body` on a new thread pinned to the CPUs of `node` (`numa_run_on_node`), waits for it, and
/// returns what it returned or rethrows what it threw. The thread checks it really runs on `node`.
package func onThread<T>(pinnedTo node: Int, _ body: @escaping () throws -> T) throws -> T {
    let job = PinnedJob()
    var outcome: Result<T, any Error>?
    job.work = {
        if numa_run_on_node(Int32(node)) != 0 {
            outcome = .failure(
                CheckError(description: "cannot run a thread on node \(node): numa_run_on_node: errno \(errno)"))
        } else if let current = NUMATopology.currentNode(), current != node {
            outcome = .failure(CheckError(description: "pinned to node \(node), but running on node \(current)"))
        } else {
            outcome = Result { try body() }
        }
    }
    var thread = pthread_t()
    let context = Unmanaged.passRetained(job).toOpaque()
    let created = pthread_create(
        &thread, nil,
        { context in
            Unmanaged<PinnedJob>.fromOpaque(context!).takeRetainedValue().work()
            return nil
        }, context)
    guard created == 0 else {
        Unmanaged<PinnedJob>.fromOpaque(context).release()
        throw CheckError(description: "cannot start a thread for node \(node): pthread_create: errno \(created)")
    }
    pthread_join(thread, nil)
    return try outcome!.get()
}

/// The work a pinned thread runs. The creating thread waits in pthread_join, so the closure's captures
/// are never used by two threads at once.
private final class PinnedJob: @unchecked Sendable {
    package var work: () -> Void = {}
}
