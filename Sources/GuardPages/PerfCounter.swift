import CStackSupport

/// A perf_event_open(2) counter of the calling thread, user space only, counting from its creation:
/// page faults (a software event, offered even without a PMU) or data-TLB read misses (a hardware event;
/// most virtual machines expose no PMU, and the kernel answers ENOENT).
///
/// ```swift
/// let faults = try PerfCounter(.pageFaults)
/// touchSomePages()
/// let count = try faults.read()   // faults taken since the counter was opened
/// ```
///
/// It counts the thread that created it (not other threads, not children), so create and read it on
/// the thread doing the work. It owns its descriptor and closes it when dropped.
package struct PerfCounter: ~Copyable {
    /// What a counter counts.
    package enum Event: String, Sendable, Hashable, CaseIterable, Codable {
        /// Page faults taken in user mode (`PERF_COUNT_SW_PAGE_FAULTS`). Faults the kernel takes on the
        /// process's behalf (`MADV_POPULATE_WRITE`, `MAP_POPULATE`) are not counted.
        case pageFaults
        /// Data-TLB read misses (`PERF_COUNT_HW_CACHE_DTLB`, read, miss).
        case dataTLBReadMisses

        var shimEvent: Int32 {
            switch self {
            case .pageFaults: FS_PERF_PAGE_FAULTS
            case .dataTLBReadMisses: FS_PERF_DTLB_READ_MISSES
            }
        }
    }

    /// What this counter counts.
    package let event: Event
    private let fd: Int32

    /// Opens a counter of `event` for the calling thread; `StackError.perfCounterUnavailable` names the
    /// errno and the fix (a PMU, `kernel.perf_event_paranoid`, `CONFIG_PERF_EVENTS`) where the kernel refuses.
    package init(_ event: Event) throws(StackError) {
        switch Syscall.openPerfCounter(event.shimEvent) {
        case .success(let fd): self.fd = fd
        case .failure(let errno): throw .perfCounterUnavailable(errno, event: event.rawValue)
        }
        self.event = event
    }

    /// The count since the counter was opened.
    package func read() throws(StackError) -> UInt64 {
        switch Syscall.readPerfCounter(fd) {
        case .success(let value): return value
        case .failure(let errno): throw .perfCounterUnavailable(errno, event: event.rawValue)
        }
    }

    /// Nil when a counter of `event` can be opened on this thread, or the error that says why not.
    package static func unavailability(of event: Event) -> StackError? {
        do {
            _ = try PerfCounter(event)
            return nil
        } catch {
            return error
        }
    }

    deinit {
        // close(2) of a descriptor this value owns alone can fail only with EIO, which perf descriptors
        // never report: there is nothing to handle.
        _ = Syscall.close(fd)
    }
}
