@_spi(Benchmarks) import GuardPages
/// How deep a stack has been used, so stacks can be sized from data.
///
/// Two ways to measure, both from the top of the usable range down:
/// - `.residency` asks the kernel (mincore) which pages are resident: the lowest resident page is the
///   deepest the stack has reached, to within a page. Free, and needs no preparation, but meaningless
///   for a prefaulted stack (every page is resident) and blind to pages the kernel reclaimed.
/// - `.painted` needs `paint(_:)` before the stack is used: it fills the usable range with a pattern
///   and `Stack.highWaterMark(by:)` finds the lowest byte that no longer holds it, to the byte.
///   Painting makes the whole range resident; use it to size stacks, not in production.
public enum HighWaterMark {
    /// How to measure.
    public enum Method: String, Sendable, Hashable, CaseIterable, Codable {
        /// The lowest resident page (mincore).
        case residency
        /// The lowest byte that no longer holds the pattern written by `paint(_:)`.
        case painted
    }

    /// The byte `paint(_:)` writes.
    package static let paintByte: UInt8 = 0xA5

    /// Fills the usable range of `layout` with a pattern that `Stack.highWaterMark(by: .painted)` looks for,
    /// except its lowest 64 bytes (where a canary may live). Only before the stack is in use: this
    /// overwrites whatever is there, and makes the whole range resident.
    public static func paint(_ layout: StackLayout) {
        let start = layout.usableBottom + UInt(Canary.size)
        UnsafeMutableRawPointer(bitPattern: start)!.initializeMemory(
            as: UInt8.self, repeating: paintByte, count: Int(layout.top - start))
    }

    /// Bytes of `layout`'s usable range used so far, counted down from the top.
    ///
    /// `.residency`: a multiple of the system page size (0 when nothing is resident). `.painted`: exact,
    /// unless a used byte happens to equal `paintByte`; at most `usable - Canary.size` (the canary zone
    /// is not painted), and meaningless without `paint(_:)` first.
    package static func measure(_ layout: StackLayout, by method: Method) throws(StackError) -> Int {
        switch method {
        case .residency:
            guard let lowest = try Probe.residency(of: layout.usableRange).firstIndex(of: true) else { return 0 }
            return Int(layout.top - layout.usableBottom) - lowest * systemPageSize
        case .painted:
            let start = layout.usableBottom + UInt(Canary.size)
            let bytes = UnsafeRawBufferPointer(
                start: UnsafeRawPointer(bitPattern: start), count: Int(layout.top - start))
            guard let lowest = firstUnpainted(bytes) else { return 0 }
            return Int(layout.top - start) - lowest
        }
    }

    /// Offset of the first byte of `bytes` that is not `paintByte`, scanning eight bytes at a time.
    private static func firstUnpainted(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let pattern = UInt64(paintByte) &* 0x0101_0101_0101_0101
        var offset = 0
        while offset + 8 <= bytes.count, bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self) == pattern {
            offset += 8
        }
        return bytes[offset...].firstIndex { $0 != paintByte }
    }
}
