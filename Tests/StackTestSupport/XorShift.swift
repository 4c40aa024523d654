/// A small, fast, deterministic generator (xorshift64*): one per thread, seeded by the test, so a failing
/// sequence can be replayed.
public struct XorShift: RandomNumberGenerator {
    public var state: UInt64

    /// Starts at `state`, which must not be 0.
    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}
