import GuardPages
/// A bounds-checked reader over untrusted bytes (ELF headers, call frame information): every read
/// returns nil past the end instead of trapping, so a truncated or hostile object cannot crash the audit.
struct ByteCursor {
    let bytes: UnsafeRawBufferPointer
    /// The link-time address of `bytes[0]`, for pc-relative pointers.
    let address: UInt64
    var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, address: UInt64, offset: Int = 0) {
        self.bytes = bytes
        self.address = address
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }
    var currentAddress: UInt64 { address &+ UInt64(offset) }

    @inline(__always)
    mutating func load<T: FixedWidthInteger>(_: T.Type) -> T? {
        guard offset >= 0, MemoryLayout<T>.size <= remaining else { return nil }
        defer { offset += MemoryLayout<T>.size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    @inline(__always)
    mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, count <= remaining else { return false }
        offset += count
        return true
    }

    /// LEB128 digits: the value's low 64 bits, how many bits were read, and the last byte (whose bit 6
    /// is the sign of a signed value); nil when truncated or longer than ten bytes.
    private mutating func leb() -> (bits: UInt64, shift: UInt64, last: UInt8)? {
        var (bits, shift): (UInt64, UInt64) = (0, 0)
        while shift < 70, let byte = load(UInt8.self) {
            if shift < 64 { bits |= UInt64(byte & 0x7f) << shift }
            shift += 7
            if byte & 0x80 == 0 { return (bits, shift, byte) }
        }
        return nil
    }

    /// Unsigned LEB128 (bits above 64 are dropped).
    mutating func uleb() -> UInt64? { leb()?.bits }

    /// Signed LEB128 (bits above 64 are dropped).
    mutating func sleb() -> Int64? {
        guard let (bits, shift, last) = leb() else { return nil }
        let value = Int64(bitPattern: bits)
        return shift < 64 && last & 0x40 != 0 ? value | (-1 << shift) : value
    }

    /// A uleb that must fit an `Int` (a register number, a length, an offset).
    mutating func ulebInt() -> Int? {
        guard let value = uleb(), value <= UInt64(Int32.max) else { return nil }
        return Int(value)
    }

    /// A pointer in a `DW_EH_PE_*` encoding. `dataBase` is the base of datarel values (the
    /// `.eh_frame_hdr` address), `bias` is subtracted from absolute values (non-zero for objects read
    /// in memory, whose absolute pointers were relocated). Nil for an unsupported or omitted encoding.
    mutating func pointer(_ encoding: UInt8, dataBase: UInt64 = 0, bias: UInt64 = 0) -> UInt64? {
        guard encoding != 0xff, encoding & 0x80 == 0 else { return nil }  // omitted, or indirect
        let fieldAddress = currentAddress
        let raw: UInt64?
        switch encoding & 0x0f {
        case 0x00, 0x04: raw = load(UInt64.self)
        case 0x01: raw = uleb()
        case 0x02: raw = load(UInt16.self).map(UInt64.init)
        case 0x03: raw = load(UInt32.self).map(UInt64.init)
        case 0x09: raw = sleb().map { UInt64(bitPattern: $0) }
        case 0x0a: raw = load(Int16.self).map { UInt64(bitPattern: Int64($0)) }
        case 0x0b: raw = load(Int32.self).map { UInt64(bitPattern: Int64($0)) }
        case 0x0c: raw = load(Int64.self).map { UInt64(bitPattern: $0) }
        default: return nil
        }
        guard let value = raw else { return nil }
        switch encoding & 0x70 {
        case 0x00: return value &- bias
        case 0x10: return fieldAddress &+ value
        case 0x30: return dataBase &+ value
        default: return nil  // textrel, funcrel, aligned: not used in .eh_frame on Linux
        }
    }
}
