@_spi(Benchmarks) import GuardPages

/// The hugetlb cgroup limits this process lives under. A container's cgroup may cap the huge pages of
/// each size its processes fault in (`hugetlb.2MB.max`; v1 `hugetlb.2MB.limit_in_bytes`) or reserve
/// (`hugetlb.2MB.rsvd.max`; v1 `…rsvd.limit_in_bytes`) whatever the pool holds: Kubernetes sets 0 for
/// a container that requests no `hugepages-2Mi`. Past such a limit the kernel refuses the mapping or its
/// population, although the pool still counts the pages free.
package enum HugeTLBCgroup {
    /// The binding limit on one page size.
    package struct Limit: Sendable, Codable, Hashable {
        /// The huge page size it limits.
        package let pageSize: Int
        /// The limit, its file and what is charged.
        package let limit: CgroupLimit

        package init(pageSize: Int, limit: CgroupLimit) {
            self.pageSize = pageSize
            self.limit = limit
        }
    }

    /// Of the limits on `pageSize` pages set on this process's cgroups and those above them, the one with
    /// the least room; nil where none is set (or none can be read).
    package static func binding(pageSize: Int) -> CgroupLimit? {
        binding(pageSize: pageSize, in: CgroupHierarchy.current(controller: "hugetlb"))
    }

    /// Of the limits on `pageSize` pages set in `hierarchies`, the one with the least room.
    package static func binding(pageSize: Int, in hierarchies: [CgroupHierarchy]) -> CgroupLimit? {
        let prefix = "hugetlb.\(formatSizeOption(pageSize))B."
        return hierarchies.flatMap { hierarchy in
            let names =
                hierarchy.unified
                ? [("max", "current"), ("rsvd.max", "rsvd.current")]
                : [("limit_in_bytes", "usage_in_bytes"), ("rsvd.limit_in_bytes", "rsvd.usage_in_bytes")]
            return names.flatMap { hierarchy.limits(prefix + $0.0, charged: prefix + $0.1) }
        }.min { $0.room < $1.room }
    }

    /// Why this process cannot have one more `pageSize` huge page, where a hugetlb cgroup limit is the
    /// reason; nil otherwise.
    package static func missing(pageSize: Int) -> String? {
        reached(pageSize: pageSize, needed: 1).map { "\($0)" }
    }

    /// The error for `needed` pages of `pageSize` that the binding limit has no room for; nil where it has.
    package static func reached(pageSize: Int, needed: Int) -> StackError? {
        guard let limit = binding(pageSize: pageSize), limit.room < needed * pageSize else { return nil }
        return .hugeTLBCgroupLimitReached(
            limitFile: limit.file, pageSize: pageSize, limit: limit.limit, usage: limit.usage, needed: needed)
    }
}
