import CStackSupport

/// Applies a `NUMAPlacement` to a range of memory: the one call every allocator makes.
@_spi(Benchmarks) public enum NUMABinding {
    /// Validates `placement` against the machine's topology, then sets its policy over `range` with
    /// mbind(2). Call it after mapping and before the first touch or prefault:
    /// the pages are then allocated, and zeroed, on the placement's nodes whichever thread faults them.
    ///
    /// `range` must be page-aligned (huge-page-aligned for hugetlb). Allocators pass the whole
    /// reservation, guard included, right after mmap and before installing the guard: a guard page is
    /// never faulted in, so its policy costs nothing, and bound stacks then merge into few VMAs like
    /// unbound ones. (A policy over the usable range alone splits the VMA; one applied after
    /// MADV_GUARD_INSTALL, which gives the VMA an anon_vma, keeps it from merging with its neighbours.)
    ///
    /// `untouched: true` promises that no page of `range` has been touched since it was mapped (a fresh
    /// stack): `existingPages` is then moot and no MPOL_MF_* flag is passed. That matters for speed:
    /// MPOL_MF_MOVE makes the kernel drain every CPU's LRU cache (lru_add_drain_all) on each call.
    ///
    /// Throws `.unsupported` when libnuma is unusable (`NUMATopology.available`) or a node cannot take
    /// pages (absent, offline, without memory), `.invalidArgument` for a negative node or an empty
    /// placement (checked against the topology read once per process); `.systemCallFailed` when the kernel
    /// refuses (EIO for `.strict` with pages elsewhere).
    @_spi(Benchmarks) public static func apply(_ placement: NUMAPlacement, to range: Range<UInt>, untouched: Bool = false)
        throws(StackError)
    {
        let topology = try NUMATopology.cached.get()
        let nodes = placement.nodes
        guard !nodes.isEmpty else { throw .numaPlacementEmpty(placement: "\(placement)") }
        for node in nodes { try topology.validateMemoryNode(node) }
        var mask = [UInt](repeating: 0, count: nodes.last! / UInt.bitWidth + 1)
        for node in nodes { mask[node / UInt.bitWidth] |= 1 << UInt(node % UInt.bitWidth) }
        let mode: Int32 =
            switch placement.mode {
            case .bind: Int32(FS_MPOL_BIND)
            case .preferred: Int32(FS_MPOL_PREFERRED)
            case .interleave: Int32(FS_MPOL_INTERLEAVE)
            }
        let flags: UInt32 =
            switch (untouched, placement.existingPages) {
            case (true, _), (false, .leave): 0
            case (false, .move): UInt32(FS_MPOL_MF_MOVE | FS_MPOL_MF_STRICT)
            case (false, .strict): UInt32(FS_MPOL_MF_STRICT)
            }
        let size = Int(range.upperBound - range.lowerBound)
        if case .failure(let errno) = Syscall.bindMemory(
            range.lowerBound, size: size, mode: mode, nodemask: mask, flags: flags)
        {
            throw .numaBindFailed(errno, placement: "\(placement)", address: range.lowerBound, size: size)
        }
    }
}
