/// How much of a stack to prefault, measured down from the top.
public enum PrefaultDepth: Sendable, Hashable {
    /// The whole usable range.
    case all
    /// The top `bytes` of the usable range (clamped to it; rounded up to whole pages).
    case top(bytes: Int)
}

/// The ordered pages to touch to prefault a stack the way it grows: from the page just below the top
/// down, one page per step, never below the usable bottom and so never into the guard.
///
/// A pure value: it computes addresses and touches nothing. Each element is the lowest address of a
/// page of `layout.pageSize`; the sequence is strictly descending with a step of exactly one page.
@_spi(Benchmarks) public struct PrefaultPlan: Sequence, Sendable, Hashable {
    /// The stack the plan covers.
    @_spi(Benchmarks) public let layout: StackLayout
    /// Number of pages in the plan.
    @_spi(Benchmarks) public let pageCount: Int

    /// Plans a prefault of `depth` bytes below the top of `layout`.
    @_spi(Benchmarks) public init(layout: StackLayout, depth: PrefaultDepth) throws(StackError) {
        let usablePages = layout.sizes.usableSize / layout.pageSize
        switch depth {
        case .all:
            pageCount = usablePages
        case .top(let bytes):
            guard bytes >= 0 else { throw .invalidSize(requested: bytes, reason: "prefault depth must not be negative") }
            // Ceiling division that cannot overflow: bytes / page, plus one if there is a remainder.
            let pages = bytes / layout.pageSize + (bytes % layout.pageSize == 0 ? 0 : 1)
            pageCount = Swift.min(pages, usablePages)
        }
        self.layout = layout
    }

    /// The range the plan covers: `[lowest planned page, top)`.
    @_spi(Benchmarks) public var range: Range<UInt> { (layout.top - UInt(pageCount * layout.pageSize))..<layout.top }

    @_spi(Benchmarks) public func makeIterator() -> Iterator { Iterator(cursor: layout.top, remaining: pageCount, step: UInt(layout.pageSize)) }

    /// Walks the plan from the top page down.
    @_spi(Benchmarks) public struct Iterator: IteratorProtocol, Sendable {
        var cursor: UInt
        var remaining: Int
        let step: UInt

        @_spi(Benchmarks) public mutating func next() -> UInt? {
            guard remaining > 0 else { return nil }
            remaining -= 1
            cursor -= step
            return cursor
        }
    }
}
