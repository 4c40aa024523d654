@_spi(Benchmarks) import GuardPages
import CStackSupport
import Glibc
import SystemPackage

/// What a pool does to a stack's pages between owners: return the cold ones to the OS, zero the rest.
///
/// - **Discard** (`MADV_DONTNEED`): the pages leave the process at once (resident set drops now) and read
///   zero on the next touch, which costs a page fault. `MADV_FREE` is not used: it frees lazily, only
///   under memory pressure, so an idle stack's resident pages would not drop and nobody could verify that
///   they did; and freed pages may keep their old contents until reclaimed, which is no scrub.
/// - **Scrub** zeroes, with memset, only the pages that are resident (mincore): what a previous owner
///   wrote is resident by definition, and zeroing a non-resident page would fault it in for nothing.
///   memset of resident memory runs at tens of GB/s; discarding and faulting back costs microseconds per
///   page, so resident pages are zeroed in place and the next owner gets them warm.
package enum StackHygiene {
    /// Whether `MADV_DONTNEED` works in this process, and if not why: a seccomp profile may refuse madvise
    /// altogether, and then released stacks keep their memory.
    package static let discards = AdviceProbe(
        Int32(FS_MADV_DONTNEED), name: "MADV_DONTNEED", lacks: "fails with EINVAL on Linux \(kernelRelease)", pages: 1)

    /// Discards the pages of `layout`'s usable range below `top - hotBytes` (rounded to the stack's page
    /// size). Returns the discarded range (nil when nothing is below the watermark), or madvise's errno.
    static func discardBelow(hotBytes: Int, of layout: StackLayout) -> Result<Range<UInt>?, Errno> {
        let page = UInt(layout.pageSize)
        let hot = (UInt(clamping: hotBytes) + page - 1) / page * page
        guard hot < UInt(layout.sizes.usableSize) else { return .success(nil) }
        let range = layout.usableBottom..<(layout.top - hot)
        return Syscall.advise(range.lowerBound, size: Int(range.upperBound - range.lowerBound), Int32(FS_MADV_DONTNEED))
            .map { range }
    }

    /// Zeroes the resident system pages of `range` (page-aligned).
    static func scrub(_ range: Range<UInt>) throws(StackError) {
        guard !range.isEmpty else { return }
        let residency = try Probe.residency(of: range)
        let page = systemPageSize
        var index = 0
        while index < residency.count {
            guard residency[index] else {
                index += 1
                continue
            }
            var end = index + 1
            while end < residency.count, residency[end] { end += 1 }
            memset(UnsafeMutableRawPointer(bitPattern: range.lowerBound + UInt(index * page))!, 0, (end - index) * page)
            index = end
        }
    }
}
