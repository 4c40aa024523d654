@_spi(Benchmarks) import GuardPages
import StackAllocators

/// How much a hugetlbfs mount may hold: its `size=` option in /proc/mounts (bytes; the kernel writes
/// the option only when the mount was given a limit).
package struct HugeTLBSizeLimit: Encodable {
    /// The mount point, as /proc/mounts writes it.
    package let path: String
    /// The limit in bytes; nil: no limit (the huge page pool is the only bound).
    package let sizeLimit: Int?

    package enum CodingKeys: String, CodingKey {
        case path
        case sizeLimit = "size_limit"
    }

    package func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(path, forKey: .path)
        try container.encode(sizeLimit, forKey: .sizeLimit)  // null, not absent, when there is no limit
    }

    /// Every hugetlbfs mount's limit; empty when /proc/mounts cannot be read.
    package static func all() -> [HugeTLBSizeLimit] {
        guard let mounts = try? SystemFile.read("/proc/mounts") else { return [] }
        return mounts.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 4, fields[2] == "hugetlbfs" else { return nil }
            let size = fields[3].split(separator: ",").first { $0.hasPrefix("size=") }
            return HugeTLBSizeLimit(path: String(fields[1]), sizeLimit: size.flatMap { Int($0.dropFirst("size=".count)) })
        }
    }

    /// "128 MiB" or "no limit".
    package var text: String { sizeLimit.map { "size limit \(formatByteCount($0))" } ?? "no size limit" }
}
