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

    /// Unsigned LEB128; nil when truncated or wider than 64 bits.
    mutating func uleb() -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = load(UInt8.self) {
            if shift < 64 { result |= UInt64(byte & 0x7f) << shift }
            else if byte & 0x7f != 0 { return nil }
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 70 { return nil }
        }
        return nil
    }

    /// Signed LEB128; nil when truncated or wider than 64 bits.
    mutating func sleb() -> Int64? {
        var result: Int64 = 0
        var shift: Int64 = 0
        while let byte = load(UInt8.self) {
            if shift < 64 { result |= Int64(byte & 0x7f) << shift }
            shift += 7
            if byte & 0x80 == 0 {
                if shift < 64, byte & 0x40 != 0 { result |= -1 << shift }
                return result
            }
            if shift > 70 { return nil }
        }
        return nil
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
