/// A known pattern at the bottom of a stack that has no hardware guard: it detects an overflow after
/// the fact (on release, or when asked), it does not trap. Used by packed huge-page stacks.
///
/// Minimal on purpose: `Canary.size` bytes at the lowest usable address, each 8-byte word derived from
/// its own address so a canary copied from another stack does not pass. (Kept to this one file so it
/// can be unified with the general canary facility for unguarded stacks.)
public enum Canary {
    /// Bytes the canary occupies at the bottom of the usable range.
    public static let size = 64
    /// The seed every word is derived from.
    private static let seed: UInt64 = 0xF1BE_57AC_CA7A_12E5

    /// Writes the canary at `address` (8-byte aligned; `size` writable bytes).
    public static func write(at address: UInt) {
        let base = UnsafeMutableRawPointer(bitPattern: address)!
        for offset in stride(from: 0, to: size, by: 8) {
            base.storeBytes(of: word(at: address + UInt(offset)), toByteOffset: offset, as: UInt64.self)
        }
    }

    /// Whether the canary at `address` is intact.
    public static func check(at address: UInt) -> Bool {
        let base = UnsafeRawPointer(bitPattern: address)!
        return stride(from: 0, to: size, by: 8).allSatisfy { offset in
            base.load(fromByteOffset: offset, as: UInt64.self) == word(at: address + UInt(offset))
        }
    }

    private static func word(at address: UInt) -> UInt64 {
        seed ^ (UInt64(address) &* 0x9E37_79B9_7F4A_7C15)
    }
}
