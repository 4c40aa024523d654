/// Decodes a fuzzer's input into values, front to back. Reading past the end yields zeros, so every
/// input, however short, decodes to something (libFuzzer's mutations shrink and grow inputs freely).
///
/// The reader borrows libFuzzer's buffer: use it only inside `LLVMFuzzerTestOneInput`.
public struct ByteReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var offset = 0

    /// A reader over `size` bytes at `data`.
    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = UnsafeBufferPointer(start: data, count: size)
    }

    /// A reader over `bytes` (for replaying inputs built in code).
    public init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Whether every byte has been read.
    public var isAtEnd: Bool { offset >= bytes.count }

    /// The next byte, or 0 past the end.
    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// The next `T`, little-endian, from `MemoryLayout<T>.size` bytes (zeros past the end).
    public mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size {
            value |= T(truncatingIfNeeded: byte()) << (8 * index)
        }
        return value
    }

    /// A boolean from one byte's low bit.
    public mutating func bool() -> Bool { byte() & 1 == 1 }

    /// A value in `range`, from as many bytes as the range needs (uniform enough for fuzzing).
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        let span = UInt(bitPattern: range.upperBound &- range.lowerBound)
        let raw: UInt =
            span < 0x100 ? UInt(byte()) : span < 0x1_0000 ? UInt(integer(UInt16.self))
            : span < 0x1_0000_0000 ? UInt(integer(UInt32.self)) : UInt(integer(UInt64.self))
        let offset = span == UInt.max ? raw : raw % (span + 1)
        return range.lowerBound &+ Int(bitPattern: offset)
    }

    /// One of `choices` (which must not be empty), chosen by one byte.
    public mutating func pick<T>(_ choices: [T]) -> T {
        choices[Int(byte()) % choices.count]
    }

    /// An integer that is likely to sit on an edge: one of `edges` nudged by -2...2, a page multiple
    /// nudged by -1...1, a small positive number, or any 64-bit value (negative and absurd included).
    /// The first byte chooses which, so the fuzzer can steer towards each kind.
    public mutating func edgyInt(edges: [Int], pageSize: Int) -> Int {
        switch byte() % 5 {
        case 0:
            let edge = edges.isEmpty ? 0 : pick(edges)
            return edge &+ int(in: -2...2)
        case 1:
            return int(in: 0...0xFFFF) &* pageSize &+ int(in: -1...1)
        case 2:
            return int(in: 1...0x10_0000)
        case 3:
            return int(in: 0...64) &* pageSize
        default:
            return integer(Int.self)
        }
    }
}

/// Integers that break careless size arithmetic; `ByteReader.edgyInt` draws from them.
public let absurdIntegers: [Int] = [0, -1, 1, Int.min, Int.max, Int.max / 2, Int.min / 2, 1 << 32, 1 << 62, -(1 << 31)]
