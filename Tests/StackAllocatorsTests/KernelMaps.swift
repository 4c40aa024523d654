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
            guard let addresses = mapping(line)?.addresses else { return false }
            // The first merged range that ends above the mapping's start overlaps it if it starts below its end.
            var (lower, upper) = (0, merged.count)
            while lower < upper {
                let middle = (lower + upper) / 2
                if merged[middle].upperBound <= addresses.lowerBound { lower = middle + 1 } else { upper = middle }
            }
            return lower < merged.count && merged[lower].lowerBound < addresses.upperBound
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
        guard let (addresses, permissions) = mapping(line) else { return nil }
        let (start, end) = (max(addresses.lowerBound, range.lowerBound), min(addresses.upperBound, range.upperBound))
        return (end > start ? Int(end - start) : 0, permissions)
    }

    /// The addresses and permissions (`rw-p`) of the mapping a maps (or smaps header) line names; nil for
    /// any other line.
    private static func mapping(_ line: Substring) -> (addresses: Range<UInt>, permissions: Substring)? {
        let fields = line.split(separator: " ", maxSplits: 2)
        let bounds = fields.first?.split(separator: "-") ?? []
        guard fields.count > 1, bounds.count == 2, let low = UInt(bounds[0], radix: 16), let high = UInt(bounds[1], radix: 16),
            low < high
        else { return nil }
        return (low..<high, fields[1])
    }
}
