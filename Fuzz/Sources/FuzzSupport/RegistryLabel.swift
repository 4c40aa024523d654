/// The model of what the guard registry stores for a label (guard_registry.c's `encode_label`): the
/// UTF-8 bytes up to the first NUL, cut to at most `capacity` bytes without splitting a character,
/// with control characters (below 0x20, and 0x7F) and `"` replaced by `?`.
public func storedLabel(_ label: String, capacity: Int) -> String {
    var bytes = Array(label.utf8.prefix { $0 != 0 })
    if bytes.count > capacity {
        var end = capacity
        while end > 0 && bytes[end] & 0xC0 == 0x80 { end -= 1 }
        bytes.removeSubrange(end...)
    }
    let cleaned = bytes.map { $0 < 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "\"") ? UInt8(ascii: "?") : $0 }
    return String(decoding: cleaned, as: UTF8.self)
}

extension ByteReader {
    /// A label of up to `maximumLength` bytes: printable ASCII, control characters, NUL, `"` and
    /// multi-byte characters, so that truncation lands inside a character now and then.
    public mutating func label(maximumLength: Int) -> String {
        let length = int(in: 0...maximumLength)
        var scalars = String.UnicodeScalarView()
        var bytes = 0
        while bytes < length {
            let scalar: Unicode.Scalar
            switch byte() % 8 {
            case 0: scalar = Unicode.Scalar(byte() % 0x20)  // control characters and NUL
            case 1: scalar = "\""
            case 2: scalar = "é"  // 2 bytes
            case 3: scalar = "€"  // 3 bytes
            case 4: scalar = "🧵"  // 4 bytes
            default: scalar = Unicode.Scalar(0x21 + byte() % 0x5E)  // printable ASCII
            }
            scalars.append(scalar)
            bytes += String(scalar).utf8.count
        }
        return String(scalars)
    }
}
