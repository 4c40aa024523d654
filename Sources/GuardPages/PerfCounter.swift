import CStackSupport
import SystemPackage

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
@_spi(Benchmarks) public struct PerfCounter: ~Copyable {
    /// What a counter counts.
    @_spi(Benchmarks) public enum Event: String, Sendable, Hashable, CaseIterable, Codable {
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
    @_spi(Benchmarks) public let event: Event
    private let fd: Int32

    /// Opens a counter of `event` for the calling thread; `Unavailable` names the
    /// errno and the fix (a PMU, `kernel.perf_event_paranoid`, `CONFIG_PERF_EVENTS`) where the kernel refuses.
    @_spi(Benchmarks) public init(_ event: Event) throws(Unavailable) {
        switch Syscall.openPerfCounter(event.shimEvent) {
        case .success(let fd): self.fd = fd
        case .failure(let errno): throw Unavailable(errno: errno, event: event.rawValue)
        }
        self.event = event
    }

    /// The count since the counter was opened.
    @_spi(Benchmarks) public func read() throws(Unavailable) -> UInt64 {
        switch Syscall.readPerfCounter(fd) {
        case .success(let value): return value
        case .failure(let errno): throw Unavailable(errno: errno, event: event.rawValue)
        }
    }

    /// Nil when a counter of `event` can be opened on this thread, or the error that says why not.
    @_spi(Benchmarks) public static func unavailability(of event: Event) -> Unavailable? {
        do {
            _ = try PerfCounter(event)
            return nil
        } catch {
            return error
        }
    }

    /// perf_event_open(2) refused the counter, or reading it failed; the description names the fix.
    @_spi(Benchmarks) public struct Unavailable: Error, Sendable, Hashable, CustomStringConvertible {
        @_spi(Benchmarks) public let errno: Errno
        @_spi(Benchmarks) public let event: String

        @_spi(Benchmarks) public var description: String {
            let fix: String
            switch errno {
            case .noSuchFileOrDirectory, .notSupported:
                fix = "the CPU or the hypervisor offers no such event (virtual machines often expose no PMU; "
                    + "enable PMU passthrough on the host, or measure by time); software events such as page faults still work"
            case .permissionDenied, .notPermitted:
                fix = "lower kernel.perf_event_paranoid (`sysctl -w kernel.perf_event_paranoid=2` allows user-space "
                    + "counting of one's own threads), grant CAP_PERFMON, or allow perf_event_open in the seccomp profile"
            case .noFunction:
                fix = "the kernel was built without perf events: it needs CONFIG_PERF_EVENTS=y"
            case .tooManyOpenFiles:
                fix = "the process is out of file descriptors: close some or raise `ulimit -n`"
            default:
                fix = "see perf_event_open(2)"
            }
            return "the perf counter of \(event) is not available: \(errno) (\(errno.rawValue)); \(fix)"
        }
    }

    deinit {
        // close(2) of a descriptor this value owns alone can fail only with EIO, which perf descriptors
        // never report: there is nothing to handle.
        _ = Syscall.close(fd)
    }
}
