import CStackSupport
@_spi(Benchmarks) import GuardPages
import Logging
import Synchronization
import SystemPackage

/// Gives released stacks' pages back to the kernel (`MADV_DONTNEED`) many ranges at a time. One
/// process_madvise(2) over a batch costs one TLB shootdown for all of its ranges; a madvise per range
/// interrupts every other CPU running the process once per range, which costs about ten times the
/// discard itself.
enum PageDiscard {
    /// Most ranges `discard` passes to one call.
    static let batchLimit = Int(FS_MADVISE_RANGES_MAX)

    /// False once process_madvise refused this process's ranges (an older kernel): every range then
    /// gets a madvise of its own. Logged when it turns false.
    private static let batches = Atomic<Bool>(true)

    /// Discards `size` bytes at each of `starts` (at most `batchLimit`); returns the positions in `starts`
    /// whose discard failed, with the errno, for the caller to keep out of reuse.
    static func discard(_ starts: [UInt], size: Int, logger: Logger) -> [(position: Int, errno: Errno)] {
        precondition(starts.count <= batchLimit, "at most \(batchLimit) ranges per discard")
        var advised = 0
        var batchError: Errno?
        if starts.count > 1, batches.load(ordering: .relaxed) {
            switch starts.withUnsafeBufferPointer({ Syscall.advise(ranges: $0, size: size, Int32(FS_MADV_DONTNEED)) }) {
            case .success(let bytes): advised = bytes / size
            case .failure(let errno): batchError = errno
            }
        }
        // The rest one by one: all of them after a refused batch, or from the range a batch stopped at.
        var failures: [(position: Int, errno: Errno)] = []
        for position in advised..<starts.count {
            if case .failure(let errno) = Syscall.advise(starts[position], size: size, Int32(FS_MADV_DONTNEED)) {
                failures.append((position, errno))
            }
        }
        // Every range was fine on its own: the kernel refused the batch itself.
        if let batchError, failures.isEmpty, batches.exchange(false, ordering: .relaxed) {
            logger.notice(
                "process_madvise(2) on this process failed; each released stack's pages are discarded with a madvise of their own, one TLB shootdown each (a kernel whose process_madvise takes PIDFD_SELF and MADV_DONTNEED batches them)",
                metadata: ["errno": "\(batchError)"])
        }
        return failures
    }
}
