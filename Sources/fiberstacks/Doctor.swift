import ArgumentParser
import Foundation
import StackAllocators

/// `fiberstacks doctor`: prints what this machine offers for fiber stacks.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show what this kernel and machine offer for fiber stacks.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let machine = try MachineCapabilities.current()
        if json {
            print(try encodeJSON(machine))
            return
        }
        func yesNo(_ value: Bool, _ detail: String) -> String { value ? "yes" : "no (\(detail))" }
        var rows: [(String, String)] = [
            ("kernel", machine.kernelRelease),
            ("page size", "\(machine.pageSize) B"),
            ("lightweight guards (MADV_GUARD_INSTALL)", yesNo(machine.lightweightGuards, "needs Linux >= 6.13; mprotect fallback")),
            ("MADV_POPULATE_WRITE", yesNo(machine.populateWrite, "needs Linux >= 5.14; touch fallback")),
            ("transparent huge pages", machine.transparentHugePages.map {
                "\($0), defrag \(machine.transparentHugePageDefrag ?? "?")"
                    + (machine.transparentHugePageSize.map { ", \(formatBytes($0)) pages" } ?? "")
            } ?? "absent"),
            ("NUMA nodes (sysfs)", machine.numaNodes.map(String.init).joined(separator: ",")),
            ("vm.max_map_count", "\(machine.maxMapCount) (this process: \(machine.mapCount) mappings)"),
        ]
        for pool in machine.hugePagePools {
            let scope = pool.node.map { "node \($0)" } ?? "global"
            rows.append((
                "huge pages \(formatBytes(pool.pageSize)) \(scope)",
                "\(pool.free) free of \(pool.total)" + (pool.reserved.map { ", \($0) reserved" } ?? "")
                    + (pool.surplus > 0 ? ", \(pool.surplus) surplus" : "")
                    + (pool.overcommit.map { $0 > 0 ? ", overcommit \($0)" : "" } ?? "") + " (\(pool.controlFile))"))
        }
        if machine.hugeTLBMounts.isEmpty {
            rows.append(("hugetlbfs mounts", "none (mount -t hugetlbfs none /dev/hugepages)"))
        }
        for mount in machine.hugeTLBMounts {
            rows.append(("hugetlbfs mount", "\(mount.path) (\(formatBytes(mount.pageSize)) pages)"))
        }
        printTable(rows)
    }
}

/// "2 MiB", "64 KiB", "1 GiB", or bytes.
func formatBytes(_ bytes: Int) -> String { formatByteCount(bytes) }

/// Two aligned columns.
func printTable(_ rows: [(String, String)]) {
    let width = rows.map(\.0.count).max() ?? 0
    for (key, value) in rows {
        print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
    }
}

/// Sorted, pretty JSON.
func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
