@_spi(Benchmarks) import GuardPages
/// Stack allocators that know every stack they hold and can measure how much of it is resident.
public protocol StackResidencyReporting: StackStatsReporting {
    /// Bytes of this allocator's stacks (handed out and kept) resident now, asked of the kernel with
    /// mincore. Costs one syscall per region or stack held: call it on request, not per operation.
    func residentBytes() throws(StackError) -> Int
}

extension StackResidencyReporting {
    /// `stats` with `bytesResident` measured now.
    public func measuredStats() throws(StackError) -> StackAllocatorStats {
        var stats = self.stats
        stats.bytesResident = try residentBytes()
        return stats
    }
}

/// Resident bytes in `range` (page-aligned), with mincore in chunks of at most `chunk` system pages so a
/// region of any size needs a bounded vector.
func residentBytes(in range: Range<UInt>, chunkPages: Int = 1 << 16) throws(StackError) -> Int {
    var resident = 0
    var start = range.lowerBound
    let chunkBytes = UInt(chunkPages * systemPageSize)
    while start < range.upperBound {
        let end = Swift.min(range.upperBound, start + chunkBytes)
        resident += try Probe.residentPages(in: start..<end)
        start = end
    }
    return resident * systemPageSize
}
