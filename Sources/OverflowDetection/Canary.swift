import GuardPages
/// A known pattern at the usable bottom of a stack that has no hardware guard (packed huge-page stacks,
/// unguarded stacks): it does not trap, but an overflow that wrote over it is found when the stack is
/// released or checked.
///
/// The pattern depends on the stack's address, so a canary copied from another stack does not pass.
/// An allocator whose stacks report `GuardMechanism.canary` writes it when it makes a stack and checks
/// it when the stack comes back (logging the error: `release` cannot throw).
@_spi(Benchmarks) public enum Canary {
    /// Bytes of pattern at the usable bottom: 64.
    @_spi(Benchmarks) public static let size = 64

    /// Writes the canary at the usable bottom of `layout` (which must be mapped and writable).
    package static func write(_ layout: StackLayout) {
        write(at: layout.usableBottom)
    }

    /// Whether the canary of `layout` is intact.
    package static func isIntact(_ layout: StackLayout) -> Bool {
        isIntact(at: layout.usableBottom)
    }

    /// Writes the canary in the highest `size` bytes of the usable range of `layout`, above the first
    /// frame of a fiber started at `layout.top - size`. Stacks are usually laid out next to each other,
    /// so a frame of the fiber above that jumped past its own guard lands here: the scheduler checks
    /// this canary whenever it resumes or frees the fiber.
    @_spi(Benchmarks) public static func writeTop(_ layout: StackLayout) {
        write(at: layout.top - UInt(size))
    }

    /// Whether the canary written by `writeTop` is intact.
    @_spi(Benchmarks) public static func isTopIntact(_ layout: StackLayout) -> Bool {
        isIntact(at: layout.top - UInt(size))
    }

    /// Throws `.canaryCorrupted` naming the stack (and its label from the guard registry, if any) when the
    /// canary of `layout` was overwritten.
    package static func check(_ layout: StackLayout) throws(StackError) {
        guard isIntact(layout) else {
            let label = GuardRegistry.entry(forStackAt: layout.usableBottom)?.label
            throw .canaryCorrupted(stack: layout, label: label.flatMap { $0.isEmpty ? nil : $0 })
        }
    }

    private static let wordCount = size / MemoryLayout<UInt64>.size

    private static func write(at start: UInt) {
        let words = UnsafeMutablePointer<UInt64>(bitPattern: start)!
        for index in 0..<wordCount {
            words[index] = word(at: start + UInt(index * MemoryLayout<UInt64>.size))
        }
    }

    private static func isIntact(at start: UInt) -> Bool {
        let words = UnsafePointer<UInt64>(bitPattern: start)!
        var difference: UInt64 = 0
        for index in 0..<wordCount {
            difference |= words[index] ^ word(at: start + UInt(index * MemoryLayout<UInt64>.size))
        }
        return difference == 0
    }

    /// The pattern's word at `address`: a constant mixed with the address.
    private static func word(at address: UInt) -> UInt64 {
        (UInt64(address) &* 0x9E37_79B9_7F4A_7C15) ^ 0xC0DE_CAFE_F1BE_5AC5
    }
}
