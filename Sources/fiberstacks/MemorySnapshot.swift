import StackAllocators

/// What the kernel says this process holds: map lines (/proc/self/maps), resident memory and hugetlb
/// pages (/proc/self/status VmRSS, HugetlbPages). Leak checks compare snapshots, never our own counters.
struct MemorySnapshot: CustomStringConvertible {
    let mapLines: Int
    let residentKiB: Int
    let hugetlbKiB: Int

    static func now() throws(StackError) -> MemorySnapshot {
        let status = try SystemFile.read("/proc/self/status")
        func field(_ name: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
            return line?.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap { Int($0) } ?? 0
        }
        return MemorySnapshot(mapLines: try MapCount.current(), residentKiB: field("VmRSS"), hugetlbKiB: field("HugetlbPages"))
    }

    var description: String { "\(mapLines) map lines, RSS \(residentKiB) KiB, hugetlb \(hugetlbKiB) KiB" }
}
