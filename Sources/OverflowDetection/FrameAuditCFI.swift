import GuardPages
/// What the call frame information (`.eh_frame`) of one function says about its stack use.
struct FrameDescription {
    /// The function's first instruction (link-time address) and its length in bytes.
    var start: UInt64 = 0
    var length: UInt64 = 0
    /// The largest offset of the CFA from the stack pointer: the frame size while no frame pointer is used.
    var stackPointerOffset: Int64 = 0
    /// The code offset at which the CFA moved to the frame pointer; from there the CFI no longer tells
    /// how far the stack pointer moves, and the prologue must be decoded.
    var framePointerFrom: UInt64?
    /// The deepest register save below the CFA, in bytes: callee-saved registers pushed after the
    /// frame pointer was set up lie above the locals.
    var deepestSave: Int64 = 0
    /// The CFA is an expression (dynamic realignment): the frame size is not fixed.
    var variable = false
}

/// A Common Information Entry: what all FDEs that point at it share.
private struct CommonInformation {
    var codeAlign: UInt64 = 1
    var dataAlign: Int64 = 1
    var pointerEncoding: UInt8 = 0
    var hasAugmentationData = false
    /// The rules after the CIE's initial instructions, the starting point of each of its FDEs.
    var initial = FrameRules(cfaRegister: 0, cfaOffset: 0)
}

/// The CFA rule as the CFA program runs, with what the audit keeps of the register rules.
private struct FrameRules {
    var cfaRegister: Int
    var cfaOffset: Int64
    var cfaIsExpression = false
    var location: UInt64 = 0
    var description = FrameDescription()

    init(cfaRegister: Int, cfaOffset: Int64) {
        self.cfaRegister = cfaRegister
        self.cfaOffset = cfaOffset
    }

    /// Records the current CFA rule in the description.
    mutating func observe(_ machine: FrameMachine) {
        if cfaIsExpression {
            description.variable = true
        } else if cfaRegister == machine.framePointer {
            if description.framePointerFrom == nil { description.framePointerFrom = location }
        } else {
            // The stack pointer, or a scratch register that holds its final value while a stack-clash
            // probe loop runs (GCC's r11): either way the offset is the frame so far.
            // Clamped, so that adding a prologue's adjustment cannot overflow on a hostile offset.
            description.stackPointerOffset = max(description.stackPointerOffset, min(cfaOffset, 1 << 40))
        }
    }

    mutating func save(at offset: Int64) {
        if offset < 0, offset > Int64(Int32.min) { description.deepestSave = max(description.deepestSave, -offset) }
    }

    /// Runs the CFA instructions in `cursor` up to `end`. False when they are malformed: an unknown
    /// opcode, an operand past `end`, or a remember/restore mismatch.
    mutating func execute(
        _ cursor: inout ByteCursor, end: Int, cie: CommonInformation, machine: FrameMachine, bias: UInt64
    ) -> Bool {
        // The remember_state stack lives only while one program runs, so copying the rules (once per
        // FDE) copies no array.
        var remembered: [(Int, Int64, Bool)] = []
        while cursor.offset < end {
            guard let opcode = cursor.load(UInt8.self) else { return false }
            switch opcode >> 6 {
            case 1:
                location &+= UInt64(opcode & 0x3f) &* cie.codeAlign
                continue
            case 2:
                guard let offset = cursor.uleb(), offset < 1 << 32 else { return false }
                save(at: Int64(offset) &* cie.dataAlign)
                continue
            case 3:
                continue
            default:
                break
            }
            switch opcode {
            case 0x00, 0x2c, 0x2d:  // nop, AArch64 negate_ra_state(_with_pc) / GNU_window_save
                break
            case 0x01:  // set_loc
                guard let address = cursor.pointer(cie.pointerEncoding, bias: bias) else { return false }
                location = address &- description.start
            case 0x02, 0x03, 0x04:  // advance_loc1/2/4
                let delta: UInt64? =
                    switch opcode {
                    case 0x02: cursor.load(UInt8.self).map(UInt64.init)
                    case 0x03: cursor.load(UInt16.self).map(UInt64.init)
                    default: cursor.load(UInt32.self).map(UInt64.init)
                    }
                guard let delta else { return false }
                location &+= delta &* cie.codeAlign
            case 0x05, 0x2f:  // offset_extended, GNU_negative_offset_extended
                guard cursor.uleb() != nil, let offset = cursor.uleb(), offset < 1 << 32 else { return false }
                save(at: (opcode == 0x05 ? 1 : -1) * Int64(offset) &* cie.dataAlign)
            case 0x11:  // offset_extended_sf
                guard cursor.uleb() != nil, let offset = cursor.sleb() else { return false }
                save(at: offset &* cie.dataAlign)
            case 0x06, 0x07, 0x08, 0x2e:  // restore_extended, undefined, same_value, GNU_args_size
                guard cursor.uleb() != nil else { return false }
            case 0x09, 0x14:  // register, val_offset
                guard cursor.uleb() != nil, cursor.uleb() != nil else { return false }
            case 0x15:  // val_offset_sf
                guard cursor.uleb() != nil, cursor.sleb() != nil else { return false }
            case 0x0a:  // remember_state
                guard remembered.count < 64 else { return false }
                remembered.append((cfaRegister, cfaOffset, cfaIsExpression))
            case 0x0b:  // restore_state
                guard let state = remembered.popLast() else { return false }
                (cfaRegister, cfaOffset, cfaIsExpression) = state
                observe(machine)
            case 0x0c, 0x12:  // def_cfa, def_cfa_sf
                guard let register = cursor.ulebInt() else { return false }
                if opcode == 0x0c {
                    guard let offset = cursor.uleb(), offset < 1 << 32 else { return false }
                    cfaOffset = Int64(offset)
                } else {
                    guard let offset = cursor.sleb() else { return false }
                    cfaOffset = offset &* cie.dataAlign
                }
                (cfaRegister, cfaIsExpression) = (register, false)
                observe(machine)
            case 0x0d:  // def_cfa_register
                guard let register = cursor.ulebInt() else { return false }
                (cfaRegister, cfaIsExpression) = (register, false)
                observe(machine)
            case 0x0e:  // def_cfa_offset
                guard let offset = cursor.uleb(), offset < 1 << 32 else { return false }
                cfaOffset = Int64(offset)
                observe(machine)
            case 0x13:  // def_cfa_offset_sf
                guard let offset = cursor.sleb() else { return false }
                cfaOffset = offset &* cie.dataAlign
                observe(machine)
            case 0x0f:  // def_cfa_expression
                guard let length = cursor.ulebInt(), cursor.skip(length) else { return false }
                cfaIsExpression = true
                observe(machine)
            case 0x10, 0x16:  // expression, val_expression
                guard cursor.uleb() != nil, let length = cursor.ulebInt(), cursor.skip(length) else { return false }
            default:
                return false
            }
        }
        return cursor.offset == end
    }
}

/// Reads `.eh_frame`: through `.eh_frame_hdr`'s sorted table where there is one, else record by record.
struct CallFrameReader {
    let space: AddressSpace
    let machine: FrameMachine
    /// Subtracted from absolute pointers: the load bias of an object read in memory, 0 for a file.
    let bias: UInt64
    /// FDEs (and CIEs) that could not be read.
    private(set) var malformed = 0
    /// The functions read so far: in address order when read through the header's table.
    private(set) var descriptions: [FrameDescription] = []
    private var cies: [UInt64: CommonInformation?] = [:]
    /// Bytes of records left to read: twice the object's size, so a table whose entries all point at
    /// one long record cannot make the audit take quadratic time.
    private var budget: Int

    init(space: AddressSpace, machine: FrameMachine, bias: UInt64) {
        self.space = space
        self.machine = machine
        self.bias = bias
        budget = 2 * space.size
    }

    /// Reads each function described through the `.eh_frame_hdr` at `header`. Returns false when the
    /// header has no table: then `walk` must read `.eh_frame` itself, at the address given.
    mutating func readIndexed(header: UInt64) -> (indexed: Bool, frames: UInt64?) {
        guard var cursor = space.bytes(at: header), cursor.load(UInt8.self) == 1,
            let frameEncoding = cursor.load(UInt8.self), let countEncoding = cursor.load(UInt8.self),
            let tableEncoding = cursor.load(UInt8.self)
        else {
            malformed += 1
            return (false, nil)
        }
        let frames = cursor.pointer(frameEncoding, dataBase: header, bias: bias)
        guard countEncoding != 0xff, tableEncoding != 0xff,
            let count = cursor.pointer(countEncoding, dataBase: header, bias: 0)
        else { return (false, frames) }
        descriptions.reserveCapacity(Int(min(count, UInt64(cursor.remaining))))
        for _ in 0..<min(count, UInt64(cursor.remaining)) {
            guard budget > 0 else {
                malformed += 1
                break
            }
            guard cursor.pointer(tableEncoding, dataBase: header, bias: bias) != nil,
                let entry = cursor.pointer(tableEncoding, dataBase: header, bias: bias)
            else {
                malformed += 1
                break
            }
            if let description = readEntry(at: entry) { descriptions.append(description) }
        }
        return (true, frames)
    }

    /// Reads each FDE of the `.eh_frame` records from `address` to the terminator, the end of their
    /// segment, or `limit` bytes.
    mutating func walk(from address: UInt64, limit: UInt64 = .max) {
        var next = address
        while next &- address < limit, let cursor = space.bytes(at: next) {
            guard let (description, size) = readRecord(cursor) else { break }
            if let description { descriptions.append(description) }
            next &+= size
        }
    }

    /// The FDE at `address`, nil (and counted) when malformed or not an FDE.
    private mutating func readEntry(at address: UInt64) -> FrameDescription? {
        guard let cursor = space.bytes(at: address), let (description, _) = readRecord(cursor), let description else {
            malformed += 1
            return nil
        }
        return description
    }

    /// The record at `cursor` and its total size: nil for the terminator or a record that runs past
    /// its segment; an inner nil for a CIE or a malformed FDE (counted).
    private mutating func readRecord(_ start: ByteCursor) -> (FrameDescription?, UInt64)? {
        var cursor = start
        guard var length = cursor.load(UInt32.self).map(UInt64.init), length != 0 else { return nil }
        let wide = length == 0xffff_ffff
        if wide {
            guard let wideLength = cursor.load(UInt64.self) else { return nil }
            length = wideLength
        }
        guard length <= UInt64(cursor.remaining) else { return nil }
        let end = cursor.offset + Int(length)
        let size = UInt64(end - start.offset)
        budget -= Int(size)
        let idAddress = cursor.currentAddress
        guard let id = wide ? cursor.load(UInt64.self) : cursor.load(UInt32.self).map(UInt64.init) else { return nil }
        if id == 0 { return (nil, size) }
        guard let cie = information(at: idAddress &- id), let begin = cursor.pointer(cie.pointerEncoding, bias: bias),
            let range = cursor.pointer(cie.pointerEncoding & 0x0f)
        else {
            malformed += 1
            return (nil, size)
        }
        if cie.hasAugmentationData {
            guard let augmentation = cursor.ulebInt(), cursor.skip(augmentation) else {
                malformed += 1
                return (nil, size)
            }
        }
        var rules = cie.initial
        rules.description = FrameDescription(start: begin, length: range)
        rules.observe(machine)
        rules.description.deepestSave = cie.initial.description.deepestSave
        guard rules.execute(&cursor, end: end, cie: cie, machine: machine, bias: bias) else {
            malformed += 1
            return (nil, size)
        }
        return (rules.description, size)
    }

    /// The CIE at `address`, parsed once.
    private mutating func information(at address: UInt64) -> CommonInformation? {
        if let known = cies[address] { return known }
        let parsed = space.bytes(at: address).flatMap(parseInformation)
        cies[address] = .some(parsed)
        return parsed
    }

    private func parseInformation(_ start: ByteCursor) -> CommonInformation? {
        var cursor = start
        guard var length = cursor.load(UInt32.self).map(UInt64.init), length != 0 else { return nil }
        let wide = length == 0xffff_ffff
        if wide { guard let value = cursor.load(UInt64.self) else { return nil }; length = value }
        guard length <= UInt64(cursor.remaining) else { return nil }
        let end = cursor.offset + Int(length)
        guard (wide ? cursor.load(UInt64.self) : cursor.load(UInt32.self).map(UInt64.init)) == 0,
            let version = cursor.load(UInt8.self), version == 1 || version == 3 || version == 4
        else { return nil }
        var augmentation: [UInt8] = []
        while let byte = cursor.load(UInt8.self), byte != 0 {
            augmentation.append(byte)
            if augmentation.count > 16 { return nil }
        }
        if version == 4 { guard cursor.skip(2) else { return nil } }  // address and segment sizes
        if augmentation.starts(with: Array("eh".utf8)) { guard cursor.skip(8) else { return nil } }
        var cie = CommonInformation()
        guard let codeAlign = cursor.uleb(), let dataAlign = cursor.sleb(),
            (version == 1 ? cursor.load(UInt8.self).map(UInt64.init) : cursor.uleb()) != nil
        else { return nil }
        (cie.codeAlign, cie.dataAlign) = (codeAlign, dataAlign)
        if augmentation.first == UInt8(ascii: "z") {
            cie.hasAugmentationData = true
            guard let augmentationLength = cursor.ulebInt() else { return nil }
            let augmentationEnd = cursor.offset + augmentationLength
            for letter in augmentation.dropFirst() {
                switch letter {
                case UInt8(ascii: "R"):
                    guard let encoding = cursor.load(UInt8.self) else { return nil }
                    cie.pointerEncoding = encoding
                case UInt8(ascii: "L"):
                    guard cursor.load(UInt8.self) != nil else { return nil }
                case UInt8(ascii: "P"):
                    guard let encoding = cursor.load(UInt8.self), cursor.pointer(encoding & 0x7f) != nil else {
                        return nil
                    }
                default:
                    break  // S, B, G: no data
                }
            }
            guard augmentationEnd <= end, cursor.skip(augmentationEnd - cursor.offset) else { return nil }
        }
        var rules = FrameRules(cfaRegister: machine.stackPointer, cfaOffset: 0)
        guard rules.execute(&cursor, end: end, cie: cie, machine: machine, bias: bias) else { return nil }
        rules.location = 0
        rules.description = FrameDescription(deepestSave: rules.description.deepestSave)
        cie.initial = rules
        return cie
    }
}
