import GuardPages
/// Reads a function's machine code where its call frame information stops telling the frame size:
/// once the CFA is defined on the frame pointer, the locals are allocated by an instruction the CFI
/// does not describe.
enum PrologueDecoder {
    /// The bytes subtracted from the stack pointer by the prologue in `code` (which starts where the
    /// frame pointer was set up); 0 when none is found. x86_64: the first `sub rsp, imm`, `add rsp, -imm`
    /// or `lea rsp, [rsp - imm]`. aarch64: every `sub sp, sp, #imm{, lsl #12}` and pre-indexed store
    /// `[sp, #-imm]!` up to the first branch.
    static func stackAdjustment(_ code: UnsafeRawBufferPointer, machine: FrameMachine) -> Int {
        switch machine {
        case .x86_64: x86Adjustment(code)
        case .aarch64: arm64Adjustment(code)
        }
    }

    /// Whether `code` (a whole function) sets the stack pointer from a register or aligns it: alloca,
    /// variable-length arrays, dynamic realignment.
    static func resizesAtRunTime(_ code: UnsafeRawBufferPointer, machine: FrameMachine) -> Bool {
        switch machine {
        case .x86_64: x86Resizes(code)
        case .aarch64: arm64Resizes(code)
        }
    }

    private static func x86Adjustment(_ code: UnsafeRawBufferPointer) -> Int {
        var index = 0
        while index + 4 <= code.count {
            defer { index += 1 }
            guard code[index] == 0x48 else { continue }
            let (opcode, operand) = (code[index + 1], code[index + 2])
            let byte = Int(Int8(bitPattern: code[index + 3]))
            let word = index + 7 <= code.count ? Int(code.loadUnaligned(fromByteOffset: index + 3, as: Int32.self)) : 0
            let disp32 = index + 8 <= code.count ? Int(code.loadUnaligned(fromByteOffset: index + 4, as: Int32.self)) : 0
            let found =
                switch (opcode, operand) {
                case (0x83, 0xec): byte  // sub rsp, imm8
                case (0x81, 0xec): word  // sub rsp, imm32
                case (0x83, 0xc4): -byte  // add rsp, -imm8
                case (0x81, 0xc4): -word  // add rsp, -imm32
                case (0x8d, 0x64) where code[index + 3] == 0x24 && index + 5 <= code.count:
                    -Int(Int8(bitPattern: code[index + 4]))  // lea rsp, [rsp + disp8]
                case (0x8d, 0xa4) where code[index + 3] == 0x24: -disp32  // lea rsp, [rsp + disp32]
                default: 0
                }
            if found > 0 { return found }
        }
        return 0
    }

    /// Scans eight bytes at a time: a write to rsp from a register has a ModRM byte with mod 11 and
    /// r/m 100 (`& 0xc7 == 0xc4`) after an opcode among 0x29, 0x81, 0x83, 0x89 (`& 0x55 == 0x01`),
    /// which few byte pairs of code match; only words holding one are looked at byte by byte. (Whole
    /// function bodies are scanned: this is the audit's hot loop.)
    private static func x86Resizes(_ code: UnsafeRawBufferPointer) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        var index = 2  // the ModRM byte of an instruction with a REX prefix and a one-byte opcode
        while index + 8 <= code.count {
            let operands = code.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let opcodes = code.loadUnaligned(fromByteOffset: index - 1, as: UInt64.self)
            // A zero byte marks a candidate.
            let candidates = ((operands & (0xc7 &* ones)) ^ (0xc4 &* ones)) | ((opcodes & (0x55 &* ones)) ^ ones)
            if (candidates &- ones) & ~candidates & (0x80 &* ones) != 0 {
                for modrm in index..<index + 8 where x86WritesStackPointer(code, modrm: modrm) { return true }
            }
            index += 8
        }
        for modrm in index..<max(index, code.count) where x86WritesStackPointer(code, modrm: modrm) { return true }
        return false
    }

    /// `and rsp, imm`, `sub rsp, reg` or `mov rsp, reg` (but not `mov rsp, rbp`: the epilogue), with
    /// its ModRM byte at `modrm`.
    @inline(__always)
    private static func x86WritesStackPointer(_ code: UnsafeRawBufferPointer, modrm: Int) -> Bool {
        let (rex, opcode, operand) = (code[modrm - 2], code[modrm - 1], code[modrm])
        guard operand & 0xc7 == 0xc4, rex & 0xf9 == 0x48 else { return false }  // rsp, REX.W without REX.B
        switch opcode {
        case 0x83, 0x81: return operand == 0xe4 && rex == 0x48
        case 0x29: return true
        case 0x89: return !(operand == 0xec && rex == 0x48)
        default: return false
        }
    }

    private static func arm64Adjustment(_ code: UnsafeRawBufferPointer) -> Int {
        var total = 0
        for index in stride(from: 0, to: code.count - 3, by: 4) {
            let word = UInt32(littleEndian: code.loadUnaligned(fromByteOffset: index, as: UInt32.self))
            if isArm64Branch(word) { break }
            if word & 0xff80_03ff == 0xd100_03ff {  // sub sp, sp, #imm12{, lsl #12}
                total += Int((word >> 10) & 0xfff) << (word & (1 << 22) != 0 ? 12 : 0)
            } else if word & 0xffc0_03e0 == 0xa980_03e0 || word & 0xffc0_03e0 == 0x6d80_03e0 {
                // stp x/d, [sp, #imm7 * 8]!
                let offset = Int(Int32(bitPattern: word << 10) >> 25) * 8
                if offset < 0 { total -= offset }
            } else if word & 0xffe0_0fe0 == 0xf800_0fe0 {  // str x, [sp, #imm9]!
                let offset = Int(Int32(bitPattern: word << 11) >> 23)
                if offset < 0 { total -= offset }
            }
        }
        return total
    }

    private static func arm64Resizes(_ code: UnsafeRawBufferPointer) -> Bool {
        for index in stride(from: 0, to: code.count - 3, by: 4) {
            let word = UInt32(littleEndian: code.loadUnaligned(fromByteOffset: index, as: UInt32.self))
            let source = (word >> 5) & 31
            if word & 0xffff_fc1f == 0x9100_001f, source != 29, source != 31 { return true }  // mov sp, xN
            if word & 0xffe0_001f == 0xcb20_001f { return true }  // sub sp, xN, xM (extended register)
            if word & 0xff80_001f == 0x9200_001f { return true }  // and sp, xN, #mask
        }
        return false
    }

    /// B, BL, B.cond, CBZ/CBNZ, TBZ/TBNZ, BR, BLR, RET: the prologue has ended.
    private static func isArm64Branch(_ word: UInt32) -> Bool {
        word & 0x7c00_0000 == 0x1400_0000 || word & 0xfe00_0000 == 0xd600_0000 || word & 0xff00_0010 == 0x5400_0000
            || word & 0x7e00_0000 == 0x3400_0000 || word & 0x7e00_0000 == 0x3600_0000
    }
}
