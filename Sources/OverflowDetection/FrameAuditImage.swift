import Glibc
import GuardPages

/// The instruction set of an audited object: it names the stack and frame pointer registers in the
/// call frame information and decides how a prologue is decoded.
enum FrameMachine: Sendable {
    case x86_64, aarch64

    /// DWARF register numbers of the stack pointer and the frame pointer.
    var stackPointer: Int { self == .x86_64 ? 7 : 31 }
    var framePointer: Int { self == .x86_64 ? 6 : 29 }

    /// The machine this process runs on.
    static var host: FrameMachine {
        #if arch(arm64)
        .aarch64
        #else
        .x86_64
        #endif
    }

    init?(elfMachine: UInt16) {
        switch Int32(elfMachine) {
        case EM_X86_64: self = .x86_64
        case EM_AARCH64: self = .aarch64
        default: return nil
        }
    }
}

/// The loadable bytes of an object by link-time address: its `PT_LOAD` segments, either as laid out
/// in its file (mapped read-only) or as the loader placed them in this process.
struct AddressSpace {
    struct Segment {
        let address: UInt64
        let bytes: UnsafeRawBufferPointer
    }

    var segments: [Segment] = []

    /// The bytes of all segments.
    var size: Int { segments.reduce(0) { $0 + $1.bytes.count } }

    /// The bytes from `address` to the end of its segment, or nil when no segment holds it.
    func bytes(at address: UInt64) -> ByteCursor? {
        for segment in segments where address >= segment.address {
            let offset = address - segment.address
            if offset < UInt64(segment.bytes.count) {
                return ByteCursor(segment.bytes, address: segment.address, offset: Int(offset))
            }
        }
        return nil
    }
}

/// A 64-bit little-endian ELF object's headers, read with every offset checked against `file`.
struct ELFFile {
    let file: UnsafeRawBufferPointer
    let machine: FrameMachine
    let header: Elf64_Ehdr

    /// Why `file` cannot be audited, or nil when its header is usable.
    static func problem(_ file: UnsafeRawBufferPointer) -> String? {
        guard file.count >= MemoryLayout<Elf64_Ehdr>.size else { return "it is too short to be an ELF object" }
        guard file[0] == 0x7f, file[1] == 0x45, file[2] == 0x4c, file[3] == 0x46 else {
            return "it is not an ELF object (no \\x7fELF magic)"
        }
        guard file[4] == 2, file[5] == 1 else { return "it is not a 64-bit little-endian ELF object" }
        let machine = UInt16(littleEndian: file.loadUnaligned(fromByteOffset: 18, as: UInt16.self))
        guard FrameMachine(elfMachine: machine) != nil else {
            return "its machine type \(machine) is neither x86_64 (62) nor aarch64 (183)"
        }
        let header = file.loadUnaligned(as: Elf64_Ehdr.self)
        let tables = [
            ("program headers", header.e_phoff, UInt64(header.e_phnum) * UInt64(header.e_phentsize)),
            ("section headers", header.e_shoff, UInt64(header.e_shnum) * UInt64(header.e_shentsize)),
        ]
        for (name, offset, size) in tables where size > 0 {
            let (end, overflow) = offset.addingReportingOverflow(size)
            guard !overflow, end <= UInt64(file.count) else {
                return "it is truncated: its \(name) end past its \(file.count) bytes"
            }
        }
        return nil
    }

    /// Nil when `problem(file)` has something to say.
    init?(_ file: UnsafeRawBufferPointer) {
        guard Self.problem(file) == nil else { return nil }
        self.file = file
        header = file.loadUnaligned(as: Elf64_Ehdr.self)
        machine = FrameMachine(elfMachine: header.e_machine)!
    }

    /// `count` entries of `T` at `offset`, each `stride` bytes apart, or none if any lies outside the file.
    private func table<T>(at offset: UInt64, count: Int, stride: Int, as _: T.Type) -> [T] {
        guard stride >= MemoryLayout<T>.size, offset < UInt64(file.count), count > 0,
            count <= (file.count - Int(offset)) / stride
        else { return [] }
        return (0..<count).map { file.loadUnaligned(fromByteOffset: Int(offset) + $0 * stride, as: T.self) }
    }

    var programHeaders: [Elf64_Phdr] {
        table(at: header.e_phoff, count: Int(header.e_phnum), stride: Int(header.e_phentsize), as: Elf64_Phdr.self)
    }

    var sectionHeaders: [Elf64_Shdr] {
        table(at: header.e_shoff, count: Int(header.e_shnum), stride: Int(header.e_shentsize), as: Elf64_Shdr.self)
    }

    /// The file's bytes of a section or segment, or nil when they lie outside the file.
    func bytes(offset: UInt64, size: UInt64) -> UnsafeRawBufferPointer? {
        guard offset <= UInt64(file.count), size <= UInt64(file.count) - offset else { return nil }
        return UnsafeRawBufferPointer(rebasing: file[Int(offset)..<Int(offset + size)])
    }

    /// The `PT_LOAD` segments as laid out in the file.
    var fileAddressSpace: AddressSpace {
        AddressSpace(segments: programHeaders.compactMap { header in
            guard header.p_type == PT_LOAD, let bytes = bytes(offset: header.p_offset, size: header.p_filesz) else {
                return nil
            }
            return AddressSpace.Segment(address: header.p_vaddr, bytes: bytes)
        })
    }

    /// The link-time address of `.eh_frame_hdr` (from `PT_GNU_EH_FRAME`), if the object has one.
    var frameHeaderAddress: UInt64? {
        programHeaders.first { $0.p_type == PT_GNU_EH_FRAME }?.p_vaddr
    }

    /// The address and size of the section called `name`, found through the section name table.
    func section(named name: String) -> Elf64_Shdr? {
        let sections = sectionHeaders
        guard Int(header.e_shstrndx) < sections.count else { return nil }
        let names = sections[Int(header.e_shstrndx)]
        guard let table = bytes(offset: names.sh_offset, size: names.sh_size) else { return nil }
        let wanted = Array(name.utf8) + [0]
        return sections.first { section in
            let start = Int(section.sh_name)
            return start <= table.count - wanted.count && table[start..<start + wanted.count].elementsEqual(wanted)
        }
    }
}
