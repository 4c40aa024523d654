import CStackSupport
import Glibc
@_spi(Benchmarks) import GuardPages

/// What the kernel offers for huge pages, read from procfs and sysfs without side effects: the pools
/// (global and per node), the hugetlbfs mounts, the transparent huge page mode; and whether this process
/// may ask for transparent huge pages (one probe on a scratch page).
@_spi(Benchmarks) public enum HugePageSystem {
    /// One huge page size's pool.
    @_spi(Benchmarks) public struct HugePagePool: Sendable, Codable, Hashable {
        /// Page size in bytes.
        package let pageSize: Int
        /// The NUMA node, or nil for the global pool.
        package let node: Int?
        /// Pages in the pool (`nr_hugepages`).
        package let total: Int
        /// Pages not in use (`free_hugepages`).
        @_spi(Benchmarks) public let free: Int
        /// Pages promised to mappings but not yet faulted (`resv_hugepages`; global pools only).
        package let reserved: Int?
        /// Surplus pages allocated beyond `total` under overcommit (`surplus_hugepages`).
        package let surplus: Int
        /// How many surplus pages the kernel may allocate on demand (`nr_overcommit_hugepages`; global pools only).
        package let overcommit: Int?
        /// The file to write to grow this pool.
        package let controlFile: String
        /// Where the counts were read: the pool's sysfs directory, or /proc/meminfo.
        package let countedIn: String

        /// Free pages not promised to any mapping: what a new mapping can still get (`free - reserved`).
        package var available: Int { free - (reserved ?? 0) }
    }

    /// A mounted hugetlbfs.
    package struct HugeTLBMount: Sendable, Codable, Hashable {
        /// Mount point.
        package let path: String
        /// Its page size in bytes.
        package let pageSize: Int
        /// Whether this process can make files in it: libhugetlbfs ignores a mount it cannot.
        package let writable: Bool
    }

    /// Huge page sizes the kernel offers, in bytes, smallest first.
    package static func hugePageSizes() -> [Int] {
        globalPools().map(\.pageSize)
    }

    /// One pool: `pageSize`'s, global (`node` nil) or on `node`; nil when the kernel has no such pool.
    @_spi(Benchmarks) public static func hugePagePool(pageSize: Int, node: Int? = nil) -> HugePagePool? {
        guard let node else { return globalPools(only: pageSize).first }
        return hugePagePools(under: "/sys/devices/system/node/node\(node)/hugepages", node: node, only: pageSize).first
    }

    /// The global pools, smallest page first: sysfs's, or where /sys/kernel/mm/hugepages lists none (a
    /// container may hide it), the default size's pool as /proc/meminfo counts it.
    package static func globalPools(only pageSize: Int? = nil) -> [HugePagePool] {
        let pools = hugePagePools(under: hugePagePoolDirectory, node: nil, only: pageSize)
        guard pools.isEmpty, let pool = meminfoPool(), pageSize.map({ $0 == pool.pageSize }) ?? true else { return pools }
        return [pool]
    }

    /// Whether /sys/kernel/mm/hugepages lists a pool (`globalPools` falls back to /proc/meminfo otherwise).
    package static var sysfsListsPools: Bool {
        !hugePagePools(under: hugePagePoolDirectory, node: nil).isEmpty
    }

    /// The default huge page size's global pool from /proc/meminfo (`HugePages_*`), nil without one.
    private static func meminfoPool() -> HugePagePool? {
        guard let meminfo = try? SystemFile.read("/proc/meminfo") else { return nil }
        func field(_ name: String) -> Int? { SystemFile.meminfoField(name, in: meminfo) }
        guard let kib = field("Hugepagesize"), kib > 0, let total = field("HugePages_Total"), let free = field("HugePages_Free")
        else { return nil }
        return HugePagePool(
            pageSize: kib << 10, node: nil, total: total, free: free, reserved: field("HugePages_Rsvd"),
            surplus: field("HugePages_Surp") ?? 0, overcommit: try? SystemFile.readInteger("/proc/sys/vm/nr_overcommit_hugepages"),
            controlFile: "/proc/sys/vm/nr_hugepages", countedIn: "/proc/meminfo")
    }

    /// Why the kernel lists no hugetlb pool at all (see `Sysfs.missing`).
    package static var hugePagePoolsMissing: String {
        Sysfs.missing(hugePagePoolDirectory, kernelNeeds: "CONFIG_HUGETLBFS")
    }

    /// Why the kernel shows no transparent huge page controls (see `Sysfs.missing`).
    package static var transparentHugePagesMissing: String {
        Sysfs.missing(transparentHugePageDirectory, kernelNeeds: "CONFIG_TRANSPARENT_HUGEPAGE")
    }

    /// Why the kernel lists no pool of `pageSize` pages: its sysfs directory is missing (see
    /// `Sysfs.missing`).
    package static func hugePagePoolMissing(pageSize: Int) -> String {
        "no \(formatByteCount(pageSize)) huge page pool: "
            + Sysfs.missing("\(hugePagePoolDirectory)/hugepages-\(pageSize >> 10)kB", kernelNeeds: "CONFIG_HUGETLBFS")
    }

    /// Where the kernel lists its global hugetlb pools, one directory per page size.
    package static let hugePagePoolDirectory = "/sys/kernel/mm/hugepages"

    /// Where the transparent huge page controls live.
    package static let transparentHugePageDirectory = "/sys/kernel/mm/transparent_hugepage"

    /// The transparent huge page mode (`always`, `madvise`, `never`), nil when the kernel has no THP.
    @_spi(Benchmarks) public static func transparentHugePageMode() -> String? {
        (try? SystemFile.read("\(transparentHugePageDirectory)/enabled")).flatMap(bracketedChoice)
    }

    /// Why this process cannot have transparent huge pages whatever it advises, or nil: a parent turned them
    /// off with prctl(PR_SET_THP_DISABLE), which every child inherits (/proc/self/status `THP_enabled: 0`).
    package static func transparentHugePagesDisabledInProcess() -> String? {
        let status = (try? SystemFile.read("/proc/self/status")) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("THP_enabled:") }
        guard line?.split(whereSeparator: \.isWhitespace).last == "0" else { return nil }
        return "transparent huge pages are off for this process (/proc/self/status THP_enabled: 0): a parent called "
            + "prctl(PR_SET_THP_DISABLE), which children inherit; start the program from a process without it"
    }

    /// Whether `MADV_HUGEPAGE` works in this process, and if not why: probed once on a scratch page. A kernel
    /// without CONFIG_TRANSPARENT_HUGEPAGE refuses it with EINVAL; a seccomp profile with EPERM or ENOSYS.
    package static let transparentAdvice = AdviceProbe(
        Int32(FS_MADV_HUGEPAGE), name: "MADV_HUGEPAGE", lacks: transparentAdviceLacks, pages: 1)
    /// What a kernel that refuses `MADV_HUGEPAGE` with EINVAL lacks.
    package static let transparentAdviceLacks = "needs a kernel built with CONFIG_TRANSPARENT_HUGEPAGE"

    /// The size of a PMD-mapped transparent huge page (`hpage_pmd_size`), nil when the kernel has no THP.
    package static func transparentHugePagePMDSize() -> Int? {
        try? SystemFile.readInteger("\(transparentHugePageDirectory)/hpage_pmd_size")
    }

    /// The pools under a sysfs `hugepages` directory (`hugepages-2048kB/...`).
    /// `only` restricts them to one page size.
    package static func hugePagePools(under directory: String, node: Int?, only: Int? = nil) -> [HugePagePool] {
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
                controlFile: node == nil && kib << 10 == defaultHugePageSize() ? "/proc/sys/vm/nr_hugepages" : "\(path)/nr_hugepages",
                countedIn: path)
        }.sorted { $0.pageSize < $1.pageSize }
    }

    /// The default huge page size (`Hugepagesize` in /proc/meminfo), 0 when there is none.
    @_spi(Benchmarks) public static func defaultHugePageSize() -> Int {
        guard let meminfo = try? SystemFile.read("/proc/meminfo"), let kib = SystemFile.meminfoField("Hugepagesize", in: meminfo)
        else { return 0 }
        return kib << 10
    }

    /// hugetlbfs mounts from /proc/mounts with their `pagesize=` option (default size when absent).
    package static func hugeTLBMounts() -> [HugeTLBMount] {
        guard let mounts = try? SystemFile.read("/proc/mounts") else { return [] }
        return mounts.split(separator: "\n").compactMap { line -> HugeTLBMount? in
            let fields = line.split(separator: " ")
            guard fields.count >= 4, fields[2] == "hugetlbfs" else { return nil }
            let option = fields[3].split(separator: ",").first { $0.hasPrefix("pagesize=") }
            let size = option.flatMap { parseSize($0.dropFirst("pagesize=".count)) } ?? defaultHugePageSize()
            let path = String(fields[1])
            return HugeTLBMount(path: path, pageSize: size, writable: canCreateFiles(in: path))
        }
    }

    /// Whether this process, with its effective user and groups, can make files in `directory`.
    package static func canCreateFiles(in directory: String) -> Bool {
        faccessat(AT_FDCWD, directory, W_OK | X_OK, AT_EACCESS) == 0
    }

    /// The error for hugetlbfs mounts of `pageSize` pages that this process cannot make files in, with
    /// their owners and modes: the `chmod` that opens one to every user, or the mount options that give
    /// it to this one.
    package static func unwritableMountError(_ paths: [String], pageSize: Int) -> StackError {
        let (uid, gid) = (geteuid(), getegid())
        let owners = paths.map { path in
            var status = stat()
            guard stat(path, &status) == 0 else { return path }
            return "\(path): uid \(status.st_uid), gid \(status.st_gid), mode \(String(status.st_mode & 0o7777, radix: 8))"
        }
        return .capabilityMissing(
            "a hugetlbfs mount for \(formatByteCount(pageSize)) pages that uid \(uid) can write (\(owners.joined(separator: "; ")))",
            fix: "as root: chmod 1777 \(paths[0]) (until it is mounted again), or mount it with -o mode=1777 or "
                + "-o uid=\(uid),gid=\(gid); then restart: libhugetlbfs reads the mounts when it loads")
    }
}
