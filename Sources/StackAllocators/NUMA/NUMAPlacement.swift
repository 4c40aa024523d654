/// Where a stack's pages must live: a NUMA policy and what to do with pages that already exist.
///
/// Set `StackRequest.placement`; the allocator applies it with mbind(2) after mapping
/// and before prefault, so the pages are zeroed on the target node whichever thread prefaults them.
public struct NUMAPlacement: Sendable, Hashable, CustomStringConvertible {
    /// The memory policy.
    package enum Mode: Sendable, Hashable {
        /// `MPOL_BIND`: every page on this node. When the node is full, allocation fails (prefault reports
        /// it; a later fault is an OOM kill), it never spills.
        case bind(Int)
        /// `MPOL_PREFERRED`: pages on this node while it has free memory, on the nearest other nodes after.
        case preferred(Int)
        /// `MPOL_INTERLEAVE`: pages round-robin over these nodes by their offset in the mapping, so each of
        /// k nodes gets ⌊n/k⌋ or ⌈n/k⌉ of n pages.
        case interleave([Int])
    }

    /// What to do with pages of the range that are present before the placement is applied (a reused
    /// stack, a range prefaulted earlier). A fresh stack has none, so the choice only matters for those.
    public enum ExistingPages: String, Sendable, Hashable, CaseIterable, Codable {
        /// `MPOL_MF_MOVE | MPOL_MF_STRICT`: migrate them to the policy's nodes; fail (EIO) if any cannot
        /// be moved (a page shared with another process, say).
        case move
        /// `MPOL_MF_STRICT`: fail (EIO) if any of them is on a node outside the policy; move nothing.
        case strict
        /// No flag: leave them where they are; the policy governs only pages faulted in later.
        case leave
    }

    /// The policy.
    package var mode: Mode
    /// The treatment of pages already present.
    public var existingPages: ExistingPages

    /// A placement of `mode`; existing pages are moved unless you say otherwise.
    package init(_ mode: Mode, existingPages: ExistingPages = .move) {
        self.mode = mode
        self.existingPages = existingPages
    }

    /// Every page on `node`.
    public static func bind(_ node: Int, existingPages: ExistingPages = .move) -> NUMAPlacement {
        NUMAPlacement(.bind(node), existingPages: existingPages)
    }

    /// Pages on `node` while it has room.
    public static func preferred(_ node: Int, existingPages: ExistingPages = .move) -> NUMAPlacement {
        NUMAPlacement(.preferred(node), existingPages: existingPages)
    }

    /// Pages spread over `nodes`.
    public static func interleave(_ nodes: [Int], existingPages: ExistingPages = .move) -> NUMAPlacement {
        NUMAPlacement(.interleave(nodes), existingPages: existingPages)
    }

    /// The nodes the policy names, sorted, without duplicates.
    @_spi(Benchmarks) public var nodes: [Int] {
        switch mode {
        case .bind(let node), .preferred(let node): [node]
        case .interleave(let nodes): Array(Set(nodes)).sorted()
        }
    }

    /// The node a stack so placed lives on (`StackDescriptor.node`): the bound or preferred node; nil for
    /// interleave.
    @_spi(Benchmarks) public var homeNode: Int? {
        switch mode {
        case .bind(let node), .preferred(let node): node
        case .interleave: nil
        }
    }

    public var description: String {
        let policy =
            switch mode {
            case .bind(let node): "bind to node \(node)"
            case .preferred(let node): "preferred node \(node)"
            case .interleave(let nodes) where nodes.isEmpty: "interleave over no node"
            case .interleave(let nodes): "interleave over nodes \(nodes.map(String.init).joined(separator: ","))"
            }
        return "\(policy), existing pages: \(existingPages)"
    }
}
