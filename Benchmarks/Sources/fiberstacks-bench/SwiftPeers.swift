import Dispatch

/// The Swift peers of the scheduler figures: structured concurrency and Dispatch running the same empty
/// jobs, on their own thread pools (one thread per CPU, as our scheduler's default).
enum SwiftPeers {
    /// Nanoseconds for `jobs` empty child tasks of one `withTaskGroup`, added one by one and awaited,
    /// from inside a task.
    static func taskGroup(jobs: Int) -> Double {
        awaitFromThread {
            let start = nanoseconds()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<jobs { group.addTask {} }
            }
            return nanoseconds() - start
        }
    }

    /// Nanoseconds for `jobs` empty blocks, each `DispatchQueue.global().async(group:)`, then `wait`.
    static func dispatch(jobs: Int) -> Double {
        let group = DispatchGroup()
        let queue = DispatchQueue.global()
        let start = nanoseconds()
        for _ in 0..<jobs { queue.async(group: group) {} }
        group.wait()
        return Double(nanoseconds() - start)
    }

    /// Nanoseconds for `DispatchQueue.concurrentPerform` over `iterations` with `body`.
    static func concurrentPerform(iterations: Int, _ body: @Sendable (Int) -> Void) -> Double {
        let start = nanoseconds()
        DispatchQueue.concurrentPerform(iterations: iterations, execute: body)
        return Double(nanoseconds() - start)
    }

    /// Runs `body` in a task and blocks this thread until it returns its nanoseconds.
    private static func awaitFromThread(_ body: @escaping @Sendable () async -> UInt64) -> Double {
        let result = ResultSlot()
        let done = DispatchSemaphore(value: 0)
        Task {
            result.value = await body()
            done.signal()
        }
        done.wait()
        return Double(result.value)
    }

    /// One value handed from a task to the thread waiting on a semaphore (which orders the accesses).
    private final class ResultSlot: @unchecked Sendable {
        var value: UInt64 = 0
    }
}
