@_spi(Benchmarks) import GuardPages
import StackAllocators

/// The kernel's view of this process's address space: /proc/self/maps.
enum KernelMaps {
    /// Bytes of `range` that some mapping covers now; with `permission` ("w", say), only mappings whose
    /// permissions (`rw-p`) include it.
    static func mappedBytes(in range: Range<UInt>, permission: Character? = nil) throws(StackError) -> Int {
        var covered = 0
        for line in try SystemFile.read("/proc/self/maps").split(separator: "\n") {
            guard let mapping = mapping(line, overlapping: range) else { continue }
            if let permission, !mapping.permissions.contains(permission) { continue }
            covered += mapping.overlap
        }
        return covered
    }

    /// Mappings (lines) that overlap any of `ranges`: what the memory there adds to the process's map
    /// count, whatever other threads of the process map meanwhile.
    static func mappings(overlapping ranges: [Range<UInt>]) throws(StackError) -> Int {
        let sorted = ranges.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        var merged: [Range<UInt>] = []
        for range in sorted {
            if let last = merged.last, range.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        return try SystemFile.read("/proc/self/maps").split(separator: "\n").count { line in
            guard let bounds = line.split(separator: " ", maxSplits: 1).first?.split(separator: "-"), bounds.count == 2,
                let low = UInt(bounds[0], radix: 16), let high = UInt(bounds[1], radix: 16)
            else { return false }
            // The first merged range that ends above the mapping's start overlaps it if it starts below its end.
            var (lower, upper) = (0, merged.count)
            while lower < upper {
                let middle = (lower + upper) / 2
                if merged[middle].upperBound <= low { lower = middle + 1 } else { upper = middle }
            }
            return lower < merged.count && merged[lower].lowerBound < high
        }
    }

    /// Bytes of `range` that strict overcommit charges against CommitLimit: writable private mappings
    /// whose smaps `VmFlags` lack `nr` (MAP_NORESERVE, honoured unless overcommit is strict).
    static func chargedBytes(in range: Range<UInt>) throws(StackError) -> Int {
        var charged = 0
        var current: (overlap: Int, chargeable: Bool)?
        for line in try SystemFile.read("/proc/self/smaps").split(separator: "\n") {
            if let mapping = mapping(line, overlapping: range) {
                current = (mapping.overlap, mapping.permissions.contains("w") && mapping.permissions.contains("p"))
            } else if line.hasPrefix("VmFlags:"), let vma = current {
                if vma.chargeable && !line.split(separator: " ").contains("nr") { charged += vma.overlap }
                current = nil
            }
        }
        return charged
    }

    /// The bytes of `range` that the mapping a maps (or smaps header) line names covers, and its
    /// permissions (`rw-p`); nil for any other line.
    private static func mapping(_ line: Substring, overlapping range: Range<UInt>) -> (overlap: Int, permissions: Substring)? {
        let fields = line.split(separator: " ", maxSplits: 2)
        let bounds = fields.first?.split(separator: "-") ?? []
        guard fields.count > 1, bounds.count == 2, let low = UInt(bounds[0], radix: 16), let high = UInt(bounds[1], radix: 16)
        else { return nil }
        let (start, end) = (max(low, range.lowerBound), min(high, range.upperBound))
        return (end > start ? Int(end - start) : 0, fields[1])
    }
}
