/// What `/proc/self/smaps` says about the mappings (VMAs) that overlap an address range: how much of
/// it the kernel backs with huge pages. The kernel reports per VMA, so the counts cover every VMA that
/// overlaps the range, whole; a stack's usable range is one VMA of its own, so for it they are exact.
package struct SmapsUsage: Sendable, Hashable, Codable {
    /// VMAs overlapping the range.
    package var mappings = 0
    /// Their size (`Size`).
    package var mappedBytes = 0
    /// Their page sizes (`KernelPageSize`), distinct, smallest first: 4096 for small pages, the huge
    /// page size for hugetlb mappings. Transparent huge pages keep 4096 here; see `anonHugeBytes`.
    package var kernelPageSizes: [Int] = []
    /// Resident bytes (`Rss`).
    package var residentBytes = 0
    /// Bytes mapped by transparent huge pages (`AnonHugePages`).
    package var anonHugeBytes = 0
    /// Bytes of hugetlb pages faulted in (`Private_Hugetlb` + `Shared_Hugetlb`).
    package var hugetlbBytes = 0

    /// Bytes backed by huge pages of either kind.
    package var hugeBytes: Int { anonHugeBytes + hugetlbBytes }

    /// Nothing mapped.
    package init() {}
}

/// Reads `/proc/<pid>/smaps`.
package enum Smaps {
    /// The usage of the VMAs overlapping `range` in this process (`path` is for tests of other files).
    package static func usage(of range: Range<UInt>, path: String = "/proc/self/smaps") throws(StackError) -> SmapsUsage {
        parse(try SystemFile.read(path), overlapping: range)
    }

    /// Parses smaps text: a header line per VMA (`start-end perms offset dev inode [path]`), then
    /// `Field: value kB` lines.
    static func parse(_ text: String, overlapping range: Range<UInt>) -> SmapsUsage {
        var usage = SmapsUsage()
        var pageSizes: Set<Int> = []
        var inRange = false
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let key = fields.first else { continue }
            if !key.hasSuffix(":") {
                let bounds = key.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inRange = bounds.count == 2 && bounds[0] < range.upperBound && range.lowerBound < bounds[1]
                if inRange { usage.mappings += 1 }
                continue
            }
            guard inRange, fields.count >= 2, let value = Int(fields[1]) else { continue }
            let bytes = fields.count >= 3 && fields[2] == "kB" ? value << 10 : value
            switch key {
            case "Size:": usage.mappedBytes += bytes
            case "KernelPageSize:": pageSizes.insert(bytes)
            case "Rss:": usage.residentBytes += bytes
            case "AnonHugePages:": usage.anonHugeBytes += bytes
            case "Private_Hugetlb:", "Shared_Hugetlb:": usage.hugetlbBytes += bytes
            default: break
            }
        }
        usage.kernelPageSizes = pageSizes.sorted()
        return usage
    }
}
