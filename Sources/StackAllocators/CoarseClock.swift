import Glibc

/// A monotonic clock cheap enough for the pools' bookkeeping: `CLOCK_MONOTONIC_COARSE` costs a few
/// nanoseconds (vDSO, no syscall) and ticks every few milliseconds, which is plenty to time idleness
/// measured in seconds. (`ContinuousClock.now` reads `CLOCK_BOOTTIME`, about 50 ns in a virtual machine.)
enum CoarseClock {
    /// Nanoseconds since an arbitrary start.
    @inline(__always)
    static func now() -> Int64 {
        var time = timespec()
        // Cannot fail for a valid clock id and pointer.
        clock_gettime(CLOCK_MONOTONIC_COARSE, &time)
        return Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
    }

    /// `duration` in nanoseconds, saturating.
    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? (seconds < 0 ? .min : .max) : whole &+ attoseconds / 1_000_000_000
    }
}
