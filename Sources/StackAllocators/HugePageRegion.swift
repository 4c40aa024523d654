import CStackSupport
import Glibc
@_spi(Benchmarks) import GuardPages
import Logging
import SystemPackage

/// Maps one guarded region: a usable range of a backing's pages, aligned to its page size, with a
/// small-page PROT_NONE guard directly below it. hugetlb refuses MADV_GUARD_INSTALL and mprotect below
/// huge-page granularity, so the guard is a mapping of its own, made like this:
///
///     1. reserve guard + usable + (page size - system page), PROT_NONE, MAP_NORESERVE
///     2. usable bottom = the first page-size boundary at least `guard` above the reservation's start
///     3. trim the reservation to [usable bottom - guard, top): the guard stays, PROT_NONE, in small pages
///     4. MAP_FIXED the backing over [usable bottom, top)
///     5. with a NUMA placement: mbind the usable range, before any page exists (docs/numa.md)
///     6. hugetlb: MADV_POPULATE_WRITE over the usable range, always, so an empty pool is an error
///        here instead of a SIGBUS at the first touch; other backings: the request's prefault policy
///
/// On every error path everything mapped is unmapped before the error is thrown.
enum HugePageRegion {
    /// Maps `sizes` (whose `pageSize` is `backing.pageSize`) and returns where it lies.
    static func map(
        _ sizes: StackSizes, backing: HugePageBacking, prefault: PrefaultPolicy, placement: NUMAPlacement?,
        logger: Logger
    ) throws(StackError) -> StackLayout
    {
        let slack = sizes.pageSize - systemPageSize
        let reservedSize = sizes.total + slack
        let reservation: UInt
        switch Syscall.map(
            size: reservedSize, protection: PROT_NONE, flags: FS_MAP_PRIVATE | FS_MAP_ANONYMOUS | FS_MAP_NORESERVE)
        {
        case .success(let address): reservation = address
        case .failure(let errno): throw mappingError(errno, size: reservedSize)
        }
        let usableBottom = (reservation + UInt(sizes.guardSize + slack)) & ~UInt(sizes.pageSize - 1)
        let layout: StackLayout
        do throws(StackError) {
            layout = try StackLayout(base: usableBottom - UInt(sizes.guardSize), sizes: sizes)
        } catch {
            Syscall.unmap(reservation, size: reservedSize, logger: logger, what: "a huge-page reservation")
            throw error
        }
        let end = reservation + UInt(reservedSize)
        for slackPiece in [reservation..<layout.base, layout.top..<end] where !slackPiece.isEmpty {
            if case .failure(let errno) = Syscall.unmap(slackPiece.lowerBound, size: slackPiece.count) {
                // Unmapping part of a mapping splits it first, which can hit vm.max_map_count.
                Syscall.unmap(reservation, size: reservedSize, logger: logger, what: "a huge-page reservation")
                throw mappingError(errno, size: reservedSize)
            }
        }
        if case .failure(let error) = backing.mapFixed(at: layout.usableBottom, size: sizes.usableSize) {
            unmap(layout, logger: logger)
            throw error
        }
        do throws(StackError) {
            if let placement {
                try NUMABinding.apply(placement, to: layout.usableRange, untouched: true)
            }
            try fill(layout, backing: backing, prefault: prefault, logger: logger)
        } catch {
            unmap(layout, logger: logger)
            // The pool's numbers are read after the unmap, so our own partial populate is not counted.
            // A bound stack draws on its node's pool: name that pool and its file.
            switch error.reason {
            case .hugePagesExhausted, .hugeTLBFSMountFull, .hugeTLBCgroupLimitReached:
                throw backing.exhaustedError(needed: sizes.usableSize / sizes.pageSize, node: placement?.homeNode)
            default:
                throw error
            }
        }
        return layout
    }

    /// Unmaps a region `map` made (guard and usable range); logs a failure, returns whether it worked.
    @discardableResult
    static func unmap(_ layout: StackLayout, logger: Logger) -> Bool {
        Syscall.unmap(layout.base, size: layout.sizes.total, logger: logger, what: "a huge-page region")
    }

    /// Makes the usable range resident: all of it for hugetlb (MADV_POPULATE_WRITE, never a touch, which
    /// would SIGBUS on an empty pool), what `prefault` says otherwise. Transparent huge pages are
    /// prefaulted in system pages: where the kernel could not give a huge page, every small page still
    /// becomes resident.
    private static func fill(_ layout: StackLayout, backing: HugePageBacking, prefault: PrefaultPolicy, logger: Logger)
        throws(StackError)
    {
        guard backing.isHugeTLB else {
            let smallPages = try StackLayout(
                base: layout.base,
                sizes: StackSizes(usableSize: layout.sizes.usableSize, guardSize: layout.sizes.guardSize, pageSize: systemPageSize))
            try Prefault.apply(prefault, to: smallPages, logger: logger)
            return
        }
        guard Prefault.populateSupported else {
            throw .capabilityMissing(
                "MADV_POPULATE_WRITE for hugetlb stacks",
                fix: "\(Prefault.populateWrite.missing ?? "it was refused"); without it an empty pool would SIGBUS at the "
                    + "first touch")
        }
        let range = layout.usableRange
        switch Syscall.advise(range.lowerBound, size: range.count, Int32(FS_MADV_POPULATE_WRITE)) {
        case .success: return
        case .failure(.noMemory), .failure(.badAddress):
            // ENOMEM: no page; EFAULT: the fault itself failed (what a touch would have seen as SIGBUS).
            throw backing.exhaustedError(needed: layout.sizes.usableSize / layout.pageSize)
        case .failure(let errno):
            throw .prefaultFailed(errno, strategy: .populate, address: range.lowerBound)
        }
    }

    /// ENOMEM from mmap/munmap: the map count if that is what ran out, else a mapping failure.
    private static func mappingError(_ errno: Errno, size: Int) -> StackError {
        errno == .noMemory ? MapCount.exhaustedError() ?? .mappingFailed(errno, size: size) : .mappingFailed(errno, size: size)
    }
}
