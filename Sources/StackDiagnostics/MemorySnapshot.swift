@_spi(Benchmarks) import GuardPages
import StackAllocators

/// What the kernel says this process holds: map lines (/proc/self/maps), resident memory and hugetlb
/// pages (/proc/self/status VmRSS, HugetlbPages). Leak checks compare snapshots, never our own counters.
package struct MemorySnapshot: CustomStringConvertible {
    package let mapLines: Int
    package let residentKiB: Int
    package let hugetlbKiB: Int

    package static func now() throws(StackError) -> MemorySnapshot {
        let status = try SystemFile.read("/proc/self/status")
        func field(_ name: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
            return line?.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap { Int($0) } ?? 0
        }
        return MemorySnapshot(mapLines: try MapCount.current(), residentKiB: field("VmRSS"), hugetlbKiB: field("HugetlbPages"))
    }

    package var description: String { "\(mapLines) map lines, RSS \(residentKiB) KiB, hugetlb \(hugetlbKiB) KiB" }
}
