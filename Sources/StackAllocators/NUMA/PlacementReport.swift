import Glibc

/// Where the pages of a range live, page by page, as the kernel reports them.
///
/// Built from move_pages(2) with `nodes` NULL, which moves nothing and faults nothing in (unlike
/// get_mempolicy with MPOL_F_ADDR): a page that was never touched is reported as not present, not
/// allocated to answer the question. The cost is about 0.2 µs per page; the query runs in chunks, so
/// a large range needs no large buffer.
public struct PlacementReport: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Pages asked about per move_pages call.
    package static let chunkPages = 1024

    /// The range queried (aligned to `pageSize`).
    package let range: Range<UInt>
    /// The page size the range was queried at: one address per page (a huge page size for hugetlb).
    package let pageSize: Int
    /// Pages in the range.
    package let pages: Int
    /// Present pages per NUMA node (nodes with none are absent).
    public let pagesPerNode: [Int: Int]
    /// Pages not present (never touched, or freed): move_pages status -ENOENT.
    public let notPresent: Int
    /// Pages the kernel could not place, per errno (EFAULT: the zero page, a guard, or nothing mapped).
    package let unreported: [Int: Int]
    /// The lowest address of a present page, per node.
    package let lowestPageOnNode: [Int: UInt]

    /// Present pages, on any node.
    public var present: Int { pagesPerNode.values.reduce(0, +) }

    /// Asks the kernel where each page of `range` is. `range` must be aligned to `pageSize`, a power of
    /// two no smaller than the system page size. Throws `.systemCallFailed` when move_pages itself fails
    /// (ENOSYS: a kernel without CONFIG_NUMA; EPERM: a seccomp profile).
    package init(range: Range<UInt>, pageSize: Int = systemPageSize) throws(StackError) {
        guard pageSize >= systemPageSize, pageSize.nonzeroBitCount == 1 else {
            throw .invalidPageSize(
                requested: pageSize, reason: "a placement query needs a power of two >= \(systemPageSize)")
        }
        let mask = UInt(pageSize - 1)
        guard range.lowerBound & mask == 0, range.upperBound & mask == 0 else {
            throw .invalidSize(
                requested: Int(truncatingIfNeeded: range.upperBound &- range.lowerBound),
                reason: "a placement query needs a range aligned to its page size \(pageSize)")
        }
        let pages = Int((range.upperBound - range.lowerBound) / UInt(pageSize))
        var perNode: [Int: Int] = [:]
        var lowest: [Int: UInt] = [:]
        var notPresent = 0
        var unreported: [Int: Int] = [:]
        let capacity = min(pages, Self.chunkPages)
        let addresses = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: max(capacity, 1))
        let status = UnsafeMutablePointer<Int32>.allocate(capacity: max(capacity, 1))
        defer {
            addresses.deallocate()
            status.deallocate()
        }
        var done = 0
        while done < pages {
            let count = min(capacity, pages - done)
            let first = range.lowerBound + UInt(done) * UInt(pageSize)
            for index in 0..<count {
                addresses[index] = UnsafeMutableRawPointer(bitPattern: first + UInt(index) * UInt(pageSize))
            }
            if case .failure(let errno) = Syscall.queryPageNodes(addresses, count: count, status: status) {
                throw .probeFailed(
                    errno,
                    what: "NUMA placement (move_pages) of \(count) pages at 0x\(String(first, radix: 16)); "
                        + "move_pages needs a kernel with CONFIG_NUMA")
            }
            for index in 0..<count {
                let code = Int(status[index])
                if code >= 0 {
                    perNode[code, default: 0] += 1
                    if lowest[code] == nil { lowest[code] = first + UInt(index) * UInt(pageSize) }
                } else if code == -Int(ENOENT) {
                    notPresent += 1
                } else {
                    unreported[-code, default: 0] += 1
                }
            }
            done += count
        }
        self.range = range
        self.pageSize = pageSize
        self.pages = pages
        self.pagesPerNode = perNode
        self.notPresent = notPresent
        self.unreported = unreported
        self.lowestPageOnNode = lowest
    }

    /// Present pages on nodes outside `nodes`.
    package func pagesOutside(_ nodes: [Int]) -> Int {
        pagesPerNode.lazy.filter { !nodes.contains($0.key) }.map(\.value).reduce(0, +)
    }

    /// Throws `.misplaced` when any present page lies outside `nodes`. Pages not present are
    /// not judged: they will be placed by the range's policy when first touched.
    public func verify(on nodes: [Int]) throws(StackError) {
        let misplaced = pagesOutside(nodes)
        guard misplaced > 0 else { return }
        let firstMisplaced = lowestPageOnNode.filter { !nodes.contains($0.key) }.values.min() ?? range.lowerBound
        throw .numaPlacementWrong(
            expected: nodes.sorted(), misplaced: misplaced, present: present, pagesPerNode: pagesPerNode,
            firstMisplaced: firstMisplaced)
    }

    public var description: String {
        let nodes = pagesPerNode.sorted { $0.key < $1.key }.map { "node \($0.key): \($0.value)" }
        let others = unreported.sorted { $0.key < $1.key }.map { "errno \($0.key): \($0.value)" }
        return "\(pages) pages of \(pageSize) B: "
            + (nodes + ["not present: \(notPresent)"] + others).joined(separator: ", ")
    }
}
