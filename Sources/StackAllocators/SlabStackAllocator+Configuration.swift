extension SlabStackAllocator {
    /// The shape of a slab: one stack size, how many stacks share a region, which guard.
    public struct Configuration: Sendable, Hashable {
        /// Largest region accepted: 1 TiB of address space.
        public static let maximumRegionSize = 1 << 40

        /// Usable bytes of every stack, rounded up to the system page size. Default 64 KiB.
        public var usableSize: Int
        /// Guard bytes below every stack, rounded up to the system page size; 0 for unguarded stacks.
        /// Default `StackRequest.defaultGuardSize` (64 KiB: Swift emits no stack probes).
        public var guardSize: Int
        /// Stacks carved from one region (one mmap). Default 4,096: with 64 KiB stacks and guards a region
        /// is 512 MiB of address space, and a million stacks need 245 regions.
        public var stacksPerRegion: Int
        /// Which guard to install: lightweight (`MADV_GUARD_INSTALL`, no mapping) where the kernel has it.
        public var guardMode: GuardMode
        /// Regions with no live stack kept mapped for reuse; beyond this many, a region is unmapped when
        /// its last stack is released. `trim()` unmaps all of them. Default 1 (no map/unmap churn at a
        /// region boundary).
        public var retainedEmptyRegions: Int
        /// Mappings left to the rest of the process when guards are mprotect guards (two mappings each):
        /// the slab refuses to carve a new guarded stack past `vm.max_map_count - mapCountReserve`.
        /// Default 1,024. Ignored with lightweight guards, which add no mapping.
        public var mapCountReserve: Int
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
            mapCountReserve: Int = 1024,
            placement: NUMAPlacement? = nil
        ) {
            self.usableSize = usableSize
            self.guardSize = guardSize
            self.stacksPerRegion = stacksPerRegion
            self.guardMode = guardMode
            self.retainedEmptyRegions = retainedEmptyRegions
            self.mapCountReserve = mapCountReserve
            self.placement = placement
        }

        /// The validated sizes of one stack and the byte size of one region.
        func validated() throws(StackError) -> (sizes: StackSizes, regionSize: Int) {
            let sizes = try StackSizes(usable: usableSize, guard: guardSize)
            guard stacksPerRegion > 0, stacksPerRegion <= Int(UInt32.max) else {
                throw .invalidSize(requested: stacksPerRegion, reason: "stacks per region must be in 1...\(UInt32.max)")
            }
            let (regionSize, overflow) = sizes.total.multipliedReportingOverflow(by: stacksPerRegion)
            guard !overflow, regionSize <= Self.maximumRegionSize else {
                throw .invalidSize(
                    requested: stacksPerRegion,
                    reason: "\(stacksPerRegion) stacks of \(sizes.total) bytes exceed the region maximum of "
                        + "\(Self.maximumRegionSize) bytes; use fewer stacks per region")
            }
            guard retainedEmptyRegions >= 0 else {
                throw .invalidSize(requested: retainedEmptyRegions, reason: "retained empty regions must not be negative")
            }
            guard mapCountReserve >= 0 else {
                throw .invalidSize(requested: mapCountReserve, reason: "the map count reserve must not be negative")
            }
            return (sizes, regionSize)
        }
    }
}
