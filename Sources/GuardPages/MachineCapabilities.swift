import Glibc

/// What this machine's kernel offers for stack memory, read from procfs and sysfs without side effects
/// (except two one-page scratch mappings, probed once per process, for the guard and populate support).
public struct MachineCapabilities: Sendable, Codable {
    /// One huge page size's pool.
    public struct HugePagePool: Sendable, Codable, Hashable {
        /// Page size in bytes.
        public let pageSize: Int
        /// The NUMA node, or nil for the global pool.
        public let node: Int?
        /// Pages in the pool (`nr_hugepages`).
        public let total: Int
        /// Pages not in use (`free_hugepages`).
        public let free: Int
        /// Pages promised to mappings but not yet faulted (`resv_hugepages`; global pools only).
        public let reserved: Int?
        /// Surplus pages allocated beyond `total` under overcommit (`surplus_hugepages`).
        public let surplus: Int
        /// How many surplus pages the kernel may allocate on demand (`nr_overcommit_hugepages`; global pools only).
        public let overcommit: Int?
        /// The file to write to grow this pool.
        public let controlFile: String

        /// Free pages not promised to any mapping: what a new mapping can still get (`free - reserved`).
        public var available: Int { free - (reserved ?? 0) }
    }

    /// A mounted hugetlbfs.
    public struct HugeTLBMount: Sendable, Codable, Hashable {
        /// Mount point.
        public let path: String
        /// Its page size in bytes.
        public let pageSize: Int
    }

    /// `uname -r`.
    public let kernelRelease: String
    /// Base page size.
    public let pageSize: Int
    /// `MADV_GUARD_INSTALL` works.
    public let lightweightGuards: Bool
    /// `MADV_POPULATE_WRITE` works.
    public let populateWrite: Bool
    /// Huge page pools, global and per node.
    public let hugePagePools: [HugePagePool]
    /// hugetlbfs mounts.
    public let hugeTLBMounts: [HugeTLBMount]
    /// Transparent huge page mode (`always`, `madvise`, `never`), nil if THP is absent.
    public let transparentHugePages: String?
    /// Transparent huge page defrag mode (`always`, `defer`, `defer+madvise`, `madvise`, `never`), nil if absent.
    public let transparentHugePageDefrag: String?
    /// Size of a transparent huge page (`hpage_pmd_size`), nil if THP is absent.
    public let transparentHugePageSize: Int?
    /// Online NUMA node ids per sysfs.
    public let numaNodes: [Int]
    /// `vm.max_map_count`.
    public let maxMapCount: Int
    /// This process's mappings now.
    public let mapCount: Int

    /// Reads everything now.
    public static func current() throws(StackError) -> MachineCapabilities {
        let nodes = (try? SystemFile.read("/sys/devices/system/node/online")).map(parseCPUList) ?? []
        var pools = hugePagePools(under: "/sys/kernel/mm/hugepages", node: nil)
        for node in nodes {
            pools += hugePagePools(under: "/sys/devices/system/node/node\(node)/hugepages", node: node)
        }
        return MachineCapabilities(
            kernelRelease: GuardPages.kernelRelease,
            pageSize: systemPageSize,
            lightweightGuards: GuardInstaller.lightweightGuardsSupported,
            populateWrite: Prefault.populateSupported,
            hugePagePools: pools,
            hugeTLBMounts: hugeTLBMounts(),
            transparentHugePages: transparentHugePageMode(),
            transparentHugePageDefrag: (try? SystemFile.read("\(transparentHugePageDirectory)/defrag"))
                .flatMap(bracketedChoice),
            transparentHugePageSize: transparentHugePagePMDSize(),
            numaNodes: nodes,
            maxMapCount: try MapCount.limit(),
            mapCount: try MapCount.current())
    }

    /// Huge page sizes the kernel offers, in bytes, smallest first.
    public static func hugePageSizes() -> [Int] {
        let pools = hugePagePools(under: "/sys/kernel/mm/hugepages", node: nil)
        return pools.map(\.pageSize).sorted()
    }

    /// One pool: `pageSize`'s, global (`node` nil) or on `node`; nil when the kernel has no such pool.
    public static func hugePagePool(pageSize: Int, node: Int? = nil) -> HugePagePool? {
        let directory = node.map { "/sys/devices/system/node/node\($0)/hugepages" } ?? "/sys/kernel/mm/hugepages"
        return hugePagePools(under: directory, node: node, only: pageSize).first
    }

    /// Where the transparent huge page controls live.
    public static let transparentHugePageDirectory = "/sys/kernel/mm/transparent_hugepage"

    /// The transparent huge page mode (`always`, `madvise`, `never`), nil when the kernel has no THP.
    public static func transparentHugePageMode() -> String? {
        (try? SystemFile.read("\(transparentHugePageDirectory)/enabled")).flatMap(bracketedChoice)
    }

    /// The size of a PMD-mapped transparent huge page (`hpage_pmd_size`), nil when the kernel has no THP.
    public static func transparentHugePagePMDSize() -> Int? {
        try? SystemFile.readInteger("\(transparentHugePageDirectory)/hpage_pmd_size")
    }

    /// The pools under a sysfs `hugepages` directory (`hugepages-2048kB/...`).
    /// `only` restricts them to one page size.
    static func hugePagePools(under directory: String, node: Int?, only: Int? = nil) -> [HugePagePool] {
        directoryEntries(directory).compactMap { entry -> HugePagePool? in
            guard entry.hasPrefix("hugepages-"), entry.hasSuffix("kB"),
                let kib = Int(entry.dropFirst("hugepages-".count).dropLast(2)), only.map({ $0 == kib << 10 }) ?? true
            else { return nil }
            let path = "\(directory)/\(entry)"
            guard let total = try? SystemFile.readInteger("\(path)/nr_hugepages"),
                let free = try? SystemFile.readInteger("\(path)/free_hugepages")
            else { return nil }
            return HugePagePool(
                pageSize: kib << 10, node: node, total: total, free: free,
                reserved: try? SystemFile.readInteger("\(path)/resv_hugepages"),
                surplus: (try? SystemFile.readInteger("\(path)/surplus_hugepages")) ?? 0,
                overcommit: try? SystemFile.readInteger("\(path)/nr_overcommit_hugepages"),
                controlFile: node == nil && kib << 10 == defaultHugePageSize() ? "/proc/sys/vm/nr_hugepages" : "\(path)/nr_hugepages")
        }.sorted { $0.pageSize < $1.pageSize }
    }

    /// The default huge page size (`Hugepagesize` in /proc/meminfo), 0 when there is none.
    public static func defaultHugePageSize() -> Int {
        guard let meminfo = try? SystemFile.read("/proc/meminfo"),
            let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("Hugepagesize:") }),
            let kib = line.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap({ Int($0) })
        else { return 0 }
        return kib << 10
    }

    /// hugetlbfs mounts from /proc/mounts with their `pagesize=` option (default size when absent).
    public static func hugeTLBMounts() -> [HugeTLBMount] {
        guard let mounts = try? SystemFile.read("/proc/mounts") else { return [] }
        return mounts.split(separator: "\n").compactMap { line -> HugeTLBMount? in
            let fields = line.split(separator: " ")
            guard fields.count >= 4, fields[2] == "hugetlbfs" else { return nil }
            let option = fields[3].split(separator: ",").first { $0.hasPrefix("pagesize=") }
            let size = option.flatMap { parseSize($0.dropFirst("pagesize=".count)) } ?? defaultHugePageSize()
            return HugeTLBMount(path: String(fields[1]), pageSize: size)
        }
    }
}

/// 2 MiB -> "2 MiB", 65536 -> "64 KiB", 1 GiB -> "1 GiB"; bytes when not a whole number of units.
public func formatByteCount(_ bytes: Int) -> String {
    wholeUnits(bytes, units: ["GiB", "MiB", "KiB"], separator: " ") ?? "\(bytes) B"
}

/// A page size in the syntax of hugetlbfs's `pagesize=` mount option: "2M", "1G", "64K" (`parseSize` reads it back).
public func formatSizeOption(_ bytes: Int) -> String {
    wholeUnits(bytes, units: ["G", "M", "K"], separator: "") ?? "\(bytes)"
}

/// `bytes` in the largest of GiB, MiB, KiB (named by `units`, largest first) that divides it, or nil.
private func wholeUnits(_ bytes: Int, units: [String], separator: String) -> String? {
    for (shift, unit) in zip([30, 20, 10], units) where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
        return "\(bytes >> shift)\(separator)\(unit)"
    }
    return nil
}

/// "0-3,5" -> [0, 1, 2, 3, 5]. Malformed parts are skipped.
public func parseCPUList(_ text: String) -> [Int] {
    text.split(whereSeparator: { $0 == "," || $0.isWhitespace }).flatMap { part -> [Int] in
        let bounds = part.split(separator: "-").compactMap { Int($0) }
        switch bounds.count {
        case 1: return bounds
        case 2 where bounds[0] <= bounds[1]: return Array(bounds[0]...bounds[1])
        default: return []
        }
    }
}

/// "2M", "1G", "2048k", "4096" -> bytes.
func parseSize<S: StringProtocol>(_ text: S) -> Int? {
    let units: [Character: Int] = ["k": 10, "K": 10, "m": 20, "M": 20, "g": 30, "G": 30]
    guard let last = text.last else { return nil }
    if let shift = units[last] { return Int(text.dropLast()).map { $0 << shift } }
    return Int(text)
}

/// "always [madvise] never" -> "madvise".
func bracketedChoice(_ text: String) -> String? {
    guard let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]"), open < close else { return nil }
    return String(text[text.index(after: open)..<close])
}

/// Names in a directory, without "." and "..". Empty when it cannot be read.
func directoryEntries(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}
