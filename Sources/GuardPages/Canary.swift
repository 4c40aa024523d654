/// A known pattern at the usable bottom of a stack that has no hardware guard (packed huge-page stacks,
/// unguarded stacks): it does not trap, but an overflow that wrote over it is found when the stack is
/// released or checked.
///
/// The pattern depends on the stack's address, so a canary copied from another stack does not pass.
/// An allocator whose stacks report `GuardMechanism.canary` writes it when it makes a stack and checks
/// it when the stack comes back (logging the error: `release` cannot throw).
public enum Canary {
    /// Bytes of pattern at the usable bottom: 64.
    public static let size = 64

    /// Writes the canary at the usable bottom of `layout` (which must be mapped and writable).
    public static func write(_ layout: StackLayout) {
        let words = UnsafeMutablePointer<UInt64>(bitPattern: layout.usableBottom)!
        for index in 0..<wordCount {
            words[index] = word(index, of: layout)
        }
    }

    /// Whether the canary of `layout` is intact.
    public static func isIntact(_ layout: StackLayout) -> Bool {
        let words = UnsafePointer<UInt64>(bitPattern: layout.usableBottom)!
        return (0..<wordCount).allSatisfy { words[$0] == word($0, of: layout) }
    }

    /// Throws `.canaryCorrupted` naming the stack (and its label from `GuardRegistry`, if any) when the
    /// canary of `layout` was overwritten.
    public static func check(_ layout: StackLayout) throws(StackError) {
        guard isIntact(layout) else {
            let label = GuardRegistry.entry(forStackAt: layout.usableBottom)?.label
            throw .canaryCorrupted(stack: layout, label: label.flatMap { $0.isEmpty ? nil : $0 })
        }
    }

    private static let wordCount = size / MemoryLayout<UInt64>.size

    /// Word `index` of the pattern: a constant mixed with the word's address.
    private static func word(_ index: Int, of layout: StackLayout) -> UInt64 {
        let address = UInt64(layout.usableBottom) + UInt64(index * MemoryLayout<UInt64>.size)
        return (address &* 0x9E37_79B9_7F4A_7C15) ^ 0xC0DE_CAFE_F1BE_5AC5
    }
}
