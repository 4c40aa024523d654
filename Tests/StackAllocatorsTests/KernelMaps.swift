@_spi(Benchmarks) import GuardPages
import StackAllocators

/// The kernel's view of this process's address space: /proc/self/maps.
enum KernelMaps {
    /// Bytes of `range` that some mapping covers now; with `permission` ("w", say), only mappings whose
    /// permissions (`rw-p`) include it.
    static func mappedBytes(in range: Range<UInt>, permission: Character? = nil) throws(StackError) -> Int {
        var covered = 0
        for line in try SystemFile.read("/proc/self/maps").split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 2)
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let low = UInt(bounds[0], radix: 16), let high = UInt(bounds[1], radix: 16) else {
                continue
            }
            if let permission, !(fields.count > 1 && fields[1].contains(permission)) { continue }
            let overlap = max(low, range.lowerBound)..<max(min(high, range.upperBound), max(low, range.lowerBound))
            covered += overlap.count
        }
        return covered
    }

    /// Bytes of `range` that strict overcommit charges against CommitLimit: writable private mappings
    /// whose smaps `VmFlags` lack `nr` (MAP_NORESERVE, honoured unless overcommit is strict).
    static func chargedBytes(in range: Range<UInt>) throws(StackError) -> Int {
        var charged = 0
        var current: (overlap: Int, chargeable: Bool)?
        for line in try SystemFile.read("/proc/self/smaps").split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            let bounds = fields.first?.split(separator: "-") ?? []
            if bounds.count == 2, fields.count > 1, let low = UInt(bounds[0], radix: 16), let high = UInt(bounds[1], radix: 16) {
                let (start, end) = (max(low, range.lowerBound), min(high, range.upperBound))
                let overlap = end > start ? Int(end - start) : 0
                current = (overlap, fields[1].contains("w") && fields[1].contains("p"))
            } else if fields.first == "VmFlags:", let vma = current {
                if vma.chargeable && !fields.contains("nr") { charged += vma.overlap }
                current = nil
            }
        }
        return charged
    }
}
