extension SlabStackAllocator {
    /// The shape of a slab: one stack size, how many stacks share a region, which guard.
    public struct Configuration: Sendable, Hashable {
        /// Largest region accepted: 1 TiB of address space.
        @_spi(Benchmarks) public static let maximumRegionSize = 1 << 40

        /// Usable bytes of every stack, rounded up to the system page size. Default 64 KiB.
        public var usableSize: Int
        /// Guard bytes below every stack, rounded up to the system page size; 0 for unguarded stacks.
        /// Default `StackRequest.defaultGuardSize` (64 KiB: Swift emits no stack probes).
        public var guardSize: Int
        /// Stacks carved from one region (one mmap). Default 4,096: with 64 KiB stacks and guards a region
        /// is 512 MiB of address space, and a million stacks need 245 regions. Where the kernel refuses
        /// that much address space (`ulimit -v`, `ulimit -d`), the slab maps smaller regions, taking at
        /// most half of the room the limit leaves, and keeps that size (logged at notice level).
        public var stacksPerRegion: Int
        /// Which guard to install: lightweight (`MADV_GUARD_INSTALL`, no mapping) where the kernel has it.
        public var guardMode: GuardMode
        /// Regions with no live stack kept mapped for reuse; beyond this many, a region is unmapped when
        /// its last stack is released. `trim()` unmaps all of them. Default 1 (no map/unmap churn at a
        /// region boundary).
        public var retainedEmptyRegions: Int
        /// Released stacks whose pages are discarded together, in one process_madvise(2): one TLB
        /// shootdown for all of them instead of one per stack (which interrupts every other CPU running
        /// the process). Until its batch is due, a released stack keeps the pages it touched; the next
        /// allocation reuses it first (discarding it then), and `trim()` discards every waiting one.
        /// 1 discards each stack as it is released. Default 32; at most 64.
        public var discardBatch: Int
        /// Mappings left to the rest of the process when guards are mprotect guards (two mappings each):
        /// the slab refuses to carve a new guarded stack past `vm.max_map_count - mapCountReserve`. At most
        /// a quarter of `vm.max_map_count` is kept, so a low limit still leaves the slab room. Default 1,024.
        /// Ignored with lightweight guards, which add no mapping.
        public var mapCountReserve: Int
        /// A map count limit used instead of `vm.max_map_count` (nil: read it), to act out a low limit.
        package var mapCountLimitOverride: Int? = nil
        /// Whether to reserve regions as under strict overcommit, used instead of `vm.overcommit_memory`
        /// (nil: read it when each region is mapped), to act it out.
        package var strictOvercommitOverride: Bool? = nil
        /// NUMA placement of every region, applied with mbind when the region is mapped (before any guard
        /// or page exists, so it stays one mapping): a slab per node. Requests may repeat it or leave
        /// `StackRequest.placement` nil; another placement is refused. Default nil (first touch).
        public var placement: NUMAPlacement?

        /// A configuration; every field has the documented default.
        public init(
            usableSize: Int = 64 << 10,
            guardSize: Int = StackRequest.defaultGuardSize,
            stacksPerRegion: Int = 4096,
            guardMode: GuardMode = .automatic,
            retainedEmptyRegions: Int = 1,
            discardBatch: Int = 32,
            mapCountReserve: Int = 1024,
            placement: NUMAPlacement? = nil
        ) {
            self.usableSize = usableSize
            self.guardSize = guardSize
            self.stacksPerRegion = stacksPerRegion
            self.guardMode = guardMode
            self.retainedEmptyRegions = retainedEmptyRegions
            self.discardBatch = discardBatch
            self.mapCountReserve = mapCountReserve
            self.placement = placement
        }

        /// The validated sizes of one stack and the byte size of one region; an invalid field is named.
        func validated() throws(StackError) -> (sizes: StackSizes, regionSize: Int) {
            let sizes = try StackSizes(
                configured: usableSize, guardSize: guardSize, type: Self.typeName, usableField: "usableSize",
                guardField: "guardSize")
            let mostStacks = min(Int(UInt32.max), Self.maximumRegionSize / sizes.total)
            guard stacksPerRegion > 0, stacksPerRegion <= mostStacks else {
                throw invalid(
                    "stacksPerRegion", stacksPerRegion,
                    allowed: "in 1...\(mostStacks) for stacks of \(sizes.total) bytes with their guards "
                        + "(a region is at most \(Self.maximumRegionSize) bytes)")
            }
            guard retainedEmptyRegions >= 0 else {
                throw invalid("retainedEmptyRegions", retainedEmptyRegions, allowed: "zero or positive")
            }
            guard (1...RangeAdvice.batchLimit).contains(discardBatch) else {
                throw invalid("discardBatch", discardBatch, allowed: "in 1...\(RangeAdvice.batchLimit)")
            }
            guard mapCountReserve >= 0 else {
                throw invalid("mapCountReserve", mapCountReserve, allowed: "zero or positive")
            }
            let regionSize = sizes.total * stacksPerRegion
            return (sizes, regionSize)
        }

        private static let typeName = "SlabStackAllocator.Configuration"

        private func invalid(_ field: String, _ value: Int, allowed: String) -> StackError {
            .invalidConfiguration(type: Self.typeName, field: field, value: "\(value)", allowed: allowed)
        }
    }
}
