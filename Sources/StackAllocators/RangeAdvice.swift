import CStackSupport
@_spi(Benchmarks) import GuardPages
import Logging
import Synchronization
import SystemPackage

/// One madvise advice over many ranges at once: released stacks' pages discarded (`MADV_DONTNEED`), new
/// slab slots guarded (`MADV_GUARD_INSTALL`). One process_madvise(2) takes the process's memory map lock
/// once for all the ranges and, for a discard, flushes the other CPUs' TLBs once: a madvise per range
/// interrupts every other CPU running the process once per range, about ten times the cost of the
/// discard itself.
enum RangeAdvice {
    /// Most ranges one call takes.
    static let batchLimit = Int(FS_MADVISE_RANGES_MAX)

    /// False once process_madvise refused this process's ranges (a kernel before 6.13, or one whose
    /// process_madvise does not take PIDFD_SELF): every range then gets a madvise of its own. Logged when
    /// it turns false.
    private static let batches = Atomic<Bool>(true)

    /// Applies `advice` to each of `ranges` (at most `batchLimit`); returns the positions in `ranges` where
    /// it failed, with the errno, for the caller to deal with.
    static func apply(_ advice: Int32, to ranges: [fs_address_range], logger: Logger) -> [(position: Int, errno: Errno)] {
        precondition(ranges.count <= batchLimit, "at most \(batchLimit) ranges per call")
        var advised = 0
        var batchError: Errno?
        if ranges.count > 1, batches.load(ordering: .relaxed) {
            switch ranges.withUnsafeBufferPointer({ Syscall.advise(ranges: $0, advice) }) {
            case .success(var bytes):
                // The ranges wholly advised; the kernel stops at the first that failed.
                while advised < ranges.count, bytes >= ranges[advised].length {
                    bytes -= ranges[advised].length
                    advised += 1
                }
            case .failure(let errno): batchError = errno
            }
        }
        // The rest one by one: all of them after a refused batch, or from the range a batch stopped at.
        var failures: [(position: Int, errno: Errno)] = []
        for position in advised..<ranges.count {
            if case .failure(let errno) = Syscall.advise(ranges[position].start, size: ranges[position].length, advice) {
                failures.append((position, errno))
            }
        }
        // Every range was fine on its own: the kernel refused the batch itself.
        if let batchError, failures.isEmpty, batches.exchange(false, ordering: .relaxed) {
            logger.notice(
                "process_madvise(2) on this process failed; slab stacks are guarded and discarded with a madvise each, which flushes the other CPUs' TLBs once per discarded stack (newer kernels take them in batches)",
                metadata: ["errno": "\(batchError)", "advice": "\(advice)"])
        }
        return failures
    }
}
