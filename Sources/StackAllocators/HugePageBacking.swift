import CHugeTLBFS
import CStackSupport
import Glibc
@_spi(Benchmarks) import GuardPages
import SystemPackage

/// A huge-page request resolved against this machine: where the pages of a region come from, and
/// their size. Resolving validates the request (bad input throws) and checks the capability (a missing
/// mount or THP switched off throws `.unsupported`, which the fallback policy may absorb).
struct HugePageBacking: Sendable, Hashable {
    /// Where the pages come from.
    enum Source: Sendable, Hashable {
        /// An unlinked file on hugetlbfs: in `directory`, or (nil) on the mount libhugetlbfs finds.
        case hugetlbfsFile(directory: String?)
        /// `MAP_HUGETLB` with the size encoded in the flags.
        case anonymousHugeTLB
        /// Transparent huge pages (`MADV_HUGEPAGE`).
        case transparent
        /// The system's base pages: what `.small` requests and fallbacks get.
        case smallPages
    }

    /// Where the pages come from.
    let source: Source
    /// Their size: the alignment and rounding unit of the usable range.
    let pageSize: Int

    /// Base pages.
    static let small = HugePageBacking(source: .smallPages, pageSize: systemPageSize)

    /// Whether the pages come from a hugetlb pool (which can run out, and then SIGBUS on a touch).
    var isHugeTLB: Bool {
        switch source {
        case .hugetlbfsFile, .anonymousHugeTLB: true
        case .transparent, .smallPages: false
        }
    }

    /// Resolves `request` on this machine.
    static func resolve(_ request: HugePageRequest) throws(StackError) -> HugePageBacking {
        switch request.backing {
        case .anonymous:
            return HugePageBacking(source: .anonymousHugeTLB, pageSize: try hugeTLBPageSize(request.pageSize))
        case .hugetlbfs(let mount?):
            guard case .success(let fileSystem) = Syscall.fileSystem(at: mount), fileSystem.type == Int(HUGETLBFS_MAGIC)
            else { throw .notHugeTLBFSMount(path: mount) }
            let size = try hugeTLBPageSize(request.pageSize ?? fileSystem.blockSize)
            guard size == fileSystem.blockSize else {
                throw .invalidPageSize(
                    requested: size, reason: "\(mount) is a hugetlbfs of \(formatByteCount(fileSystem.blockSize)) pages")
            }
            return HugePageBacking(source: .hugetlbfsFile(directory: mount), pageSize: size)
        case .hugetlbfs(nil):
            let size = try hugeTLBPageSize(request.pageSize)
            let found = hugetlbfs_find_path_for_size(size).map { String(cString: $0) }
            if let found, HugePageSystem.canCreateFiles(in: found) {
                return HugePageBacking(source: .hugetlbfsFile(directory: nil), pageSize: size)
            }
            // libhugetlbfs skips the mounts this user cannot write, and keeps the ones it found when it
            // loaded, which may have changed since.
            let unwritable = found.map { [$0] }
                ?? HugePageSystem.hugeTLBMounts().filter { $0.pageSize == size && !$0.writable }.map(\.path)
            guard unwritable.isEmpty else { throw HugePageSystem.unwritableMountError(unwritable, pageSize: size) }
            throw .capabilityMissing(
                "a hugetlbfs mount for \(formatByteCount(size)) pages",
                fix: "as root: mkdir -p /dev/hugepages && mount -t hugetlbfs -o pagesize=\(formatSizeOption(size)) none "
                    + "/dev/hugepages (scripts/setup does it), then restart: libhugetlbfs reads the mounts when it loads")
        case .transparent:
            guard let mode = HugePageSystem.transparentHugePageMode(),
                let pmdSize = HugePageSystem.transparentHugePagePMDSize()
            else {
                throw .capabilityMissing(
                    "transparent huge pages",
                    fix: HugePageSystem.transparentHugePagesMissing)
            }
            if let size = request.pageSize, size != pmdSize {
                throw .invalidPageSize(
                    requested: size,
                    reason: "transparent huge pages are \(formatByteCount(pmdSize)) here "
                        + "(\(HugePageSystem.transparentHugePageDirectory)/hpage_pmd_size)")
            }
            guard mode != "never" else {
                throw .capabilityMissing(
                    "transparent huge pages (mode never)",
                    fix: "as root: echo madvise > \(HugePageSystem.transparentHugePageDirectory)/enabled")
            }
            if let missing = HugePageSystem.transparentAdvice.missing {
                throw .capabilityMissing("madvise(MADV_HUGEPAGE)", fix: missing)
            }
            if let disabled = HugePageSystem.transparentHugePagesDisabledInProcess() {
                throw .capabilityMissing("transparent huge pages in this process", fix: disabled)
            }
            return HugePageBacking(source: .transparent, pageSize: pmdSize)
        }
    }

    /// `requested` (nil: the default huge page size) if this kernel has a hugetlb pool of that size.
    private static func hugeTLBPageSize(_ requested: Int?) throws(StackError) -> Int {
        let sizes = HugePageSystem.hugePageSizes()
        guard !sizes.isEmpty else {
            throw .capabilityMissing(
                "hugetlb pages",
                fix: HugePageSystem.hugePagePoolsMissing)
        }
        let size = requested ?? HugePageSystem.defaultHugePageSize()
        guard sizes.contains(size) else {
            let listed = sizes.map(formatByteCount).joined(separator: ", ")
            throw .invalidPageSize(
                requested: size,
                reason: HugePageSystem.sysfsListsPools
                    ? "this kernel offers \(listed) huge pages (\(HugePageSystem.hugePagePoolDirectory))"
                    : "only the default size, \(listed), is known (/proc/meminfo): \(HugePageSystem.hugePagePoolsMissing)")
        }
        return size
    }

    /// Maps `size` bytes of this backing at `address` (aligned to `pageSize`) over memory this process
    /// owns (a reservation), with MAP_FIXED. Never MAP_STACK on transparent huge pages (since Linux 6.7
    /// it turns them off). A hugetlb mapping reserves its pages here: ENOMEM means the pool is short.
    func mapFixed(at address: UInt, size: Int) -> Result<Void, StackError> {
        let fixed = FS_MAP_PRIVATE | FS_MAP_FIXED
        switch source {
        case .smallPages:
            return mapped(Syscall.map(address: address, size: size, flags: fixed | FS_MAP_ANONYMOUS | FS_MAP_NORESERVE | FS_MAP_STACK), size)
        case .anonymousHugeTLB:
            let sizeFlag = Int32(pageSize.trailingZeroBitCount) << FS_MAP_HUGE_SHIFT
            return mapped(Syscall.map(address: address, size: size, flags: fixed | FS_MAP_ANONYMOUS | FS_MAP_HUGETLB | sizeFlag), size)
        case .hugetlbfsFile(let directory):
            let fd: Int32
            switch openUnlinkedFile(in: directory) {
            case .success(let opened): fd = opened
            case .failure(let error): return .failure(error)
            }
            // Private: the pages are this mapping's own; the file only names the pool and the mount.
            let result = mapped(Syscall.map(address: address, size: size, flags: fixed, fd: fd), size)
            _ = Syscall.close(fd)
            return result
        case .transparent:
            if case .failure(let error) = mapped(Syscall.map(address: address, size: size, flags: fixed | FS_MAP_ANONYMOUS), size) {
                return .failure(error)
            }
            if case .failure(let errno) = Syscall.advise(address, size: size, Int32(FS_MADV_HUGEPAGE)) {
                return .failure(.capabilityMissing(
                    "madvise(MADV_HUGEPAGE)",
                    fix: AdviceProbe.refusal(errno, name: "MADV_HUGEPAGE", lacks: HugePageSystem.transparentAdviceLacks)))
            }
            return .success(())
        }
    }

    /// The error for a hugetlb pool that could not give `needed` pages, with the numbers now: the
    /// hugetlbfs mount's when its `size=` limit is what ran out, the pool's when it lacks them, else the
    /// hugetlb cgroup limit's when that is what ran out.
    func exhaustedError(needed: Int, node: Int? = nil) -> StackError {
        if let full = mountFullError(needed: needed) { return full }
        let pool = HugePageSystem.hugePagePool(pageSize: pageSize, node: node)
        if let pool, pool.available >= needed, let limited = HugeTLBCgroup.reached(pageSize: pageSize, needed: needed) {
            return limited
        }
        return .hugePagesExhausted(
            pageSize: pageSize, needed: needed, free: pool?.available ?? 0, node: node,
            controlFile: pool?.controlFile ?? "/sys/kernel/mm/hugepages/hugepages-\(pageSize >> 10)kB/nr_hugepages")
    }

    /// `.resourceExhausted` when this backing's hugetlbfs mount has a size limit (statfs: `f_blocks` > 0)
    /// with fewer than `needed` pages free, else nil.
    private func mountFullError(needed: Int) -> StackError? {
        guard case .hugetlbfsFile(let directory) = source,
            let path = directory ?? hugetlbfs_find_path_for_size(pageSize).map({ String(cString: $0) }),
            case .success(let fileSystem) = Syscall.fileSystem(at: path), fileSystem.blocks > 0,
            fileSystem.freeBlocks < needed
        else { return nil }
        // Name the mount point (what `umount` and `mount` take), not a directory below it.
        let mount = HugePageSystem.hugeTLBMounts().map(\.path)
            .filter { path == $0 || path.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }
            .max { $0.count < $1.count } ?? path
        return .hugeTLBFSMountFull(
            mount: mount, pageSize: pageSize, limit: fileSystem.blocks, free: fileSystem.freeBlocks, needed: needed)
    }

    /// An mmap result with ENOMEM named: the pool (hugetlb), the map count, or memory.
    private func mapped(_ result: Result<UInt, Errno>, _ size: Int) -> Result<Void, StackError> {
        switch result {
        case .success: return .success(())
        case .failure(.noMemory):
            if let exhausted = MapCount.exhaustedError() { return .failure(exhausted) }
            return .failure(isHugeTLB ? exhaustedError(needed: size / pageSize) : .mappingFailed(.noMemory, size: size))
        case .failure(let errno): return .failure(.mappingFailed(errno, size: size))
        }
    }

    /// A new unlinked file on the hugetlbfs for this page size (libhugetlbfs) or in `directory`.
    private func openUnlinkedFile(in directory: String?) -> Result<Int32, StackError> {
        if let directory {
            return Syscall.unlinkedTemporaryFile(in: directory).mapError { fileError($0, mount: directory) }
        }
        let fd = hugetlbfs_unlinked_fd_for_size(pageSize)
        guard fd >= 0 else {
            let errno = Errno(rawValue: Glibc.errno)
            let path = hugetlbfs_find_path_for_size(pageSize).map { String(cString: $0) } ?? "(no mount)"
            return .failure(fileError(errno, mount: path))
        }
        return .success(fd)
    }

    /// Why no file could be made on the hugetlbfs at `mount`, by errno.
    private func fileError(_ errno: Errno, mount: String) -> StackError {
        let fix =
            switch errno {
            case .permissionDenied, .notPermitted, .readOnlyFileSystem:
                "the mount must be writable by this user: check its mode and its uid=/gid= options"
            case .noSpace: "the mount's nr_inodes= limit is reached: mount it again with a larger one, or without it"
            default: "see open(2) and mkstemp(3)"
            }
        return .capabilityMissing("a file on the hugetlbfs \(mount) (\(errno))", fix: fix)
    }
}
