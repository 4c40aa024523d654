import Glibc
import GuardPages

/// The function symbols of an object, sorted by address, to name the functions its CFI describes:
/// `.symtab` where the object keeps it (it names local functions too), else `.dynsym`. It points into
/// the object's bytes: use it only while they stay mapped.
struct SymbolTable {
    private struct Symbol {
        let start: UInt64
        let end: UInt64
        let name: UInt32
    }

    private var symbols: [Symbol] = []
    private var names = UnsafeRawBufferPointer(start: nil, count: 0)

    /// No symbols: every function is named by its address.
    init() {}

    /// The symbols of `elf`; empty when it has neither table (or they lie outside the file).
    init(_ elf: ELFFile) {
        let sections = elf.sectionHeaders
        guard let table = sections.first(where: { $0.sh_type == SHT_SYMTAB })
                ?? sections.first(where: { $0.sh_type == SHT_DYNSYM }),
            Int(table.sh_link) < sections.count,
            let entries = elf.bytes(offset: table.sh_offset, size: table.sh_size),
            case let stringTable = sections[Int(table.sh_link)],
            let strings = elf.bytes(offset: stringTable.sh_offset, size: stringTable.sh_size)
        else { return }
        names = strings
        let stride = MemoryLayout<Elf64_Sym>.size
        symbols.reserveCapacity(entries.count / stride)
        for offset in Swift.stride(from: 0, to: entries.count - stride + 1, by: stride) {
            let symbol = entries.loadUnaligned(fromByteOffset: offset, as: Elf64_Sym.self)
            let type = Int32(symbol.st_info & 0xf)
            guard type == STT_FUNC || type == STT_GNU_IFUNC, symbol.st_shndx != 0, symbol.st_value != 0,
                Int(symbol.st_name) < strings.count
            else { continue }
            let end = symbol.st_value &+ max(symbol.st_size, 1)
            symbols.append(Symbol(start: symbol.st_value, end: end, name: symbol.st_name))
        }
        symbols.sort { $0.start < $1.start }
    }

    /// The index of the first symbol after `from` that starts above `address` (binary search).
    private func upperBound(_ address: UInt64, from: Int) -> Int {
        var (low, high) = (from, symbols.count)
        while low < high {
            let middle = (low + high) / 2
            if symbols[middle].start <= address { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The raw (mangled) name of the function containing `address`, empty when no symbol covers it.
    /// `hint` is the index found for the previous address: functions come in address order from
    /// `.eh_frame_hdr`, so the next symbol is usually at or just after it.
    func name(at address: UInt64, hint: inout Int) -> UnsafeRawBufferPointer {
        var low: Int
        if hint > 0, hint <= symbols.count, symbols[hint - 1].start <= address {
            low = hint
            while low < symbols.count, symbols[low].start <= address, low - hint < 8 { low += 1 }
            if low - hint == 8 { low = upperBound(address, from: low) }
        } else {
            low = upperBound(address, from: 0)
        }
        hint = low
        guard low > 0, address < symbols[low - 1].end else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        // Aliases share an address: any of them names the function.
        let start = Int(symbols[low - 1].name)
        let tail = names.baseAddress! + start
        let end = memchr(tail, 0, names.count - start).map { $0 - UnsafeMutableRawPointer(mutating: tail) } ?? names.count - start
        return UnsafeRawBufferPointer(start: tail, count: end)
    }
}

/// Human-readable names for Swift and C++ symbols, through the demanglers of the runtimes this
/// process has loaded (found with dlsym, so the audit needs neither at build time).
enum Demangler {
    private typealias SwiftDemangle = @convention(c) (
        UnsafePointer<CChar>?, Int, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UInt32
    ) -> UnsafeMutablePointer<CChar>?
    private typealias CxxDemangle = @convention(c) (
        UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UnsafeMutablePointer<Int32>?
    ) -> UnsafeMutablePointer<CChar>?

    private static let swift = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "swift_demangle")
        .map { unsafeBitCast($0, to: SwiftDemangle.self) }
    private static let cxx = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__cxa_demangle")
        .map { unsafeBitCast($0, to: CxxDemangle.self) }

    /// `symbol` demangled, or unchanged when it is not mangled or no demangler is loaded.
    static func demangle(_ symbol: String) -> String {
        let demangled: UnsafeMutablePointer<CChar>?
        if symbol.hasPrefix("$s") || symbol.hasPrefix("_$s") || symbol.hasPrefix("$S") || symbol.hasPrefix("_T0") {
            demangled = swift.flatMap { demangle in symbol.withCString { demangle($0, strlen($0), nil, nil, 0) } }
        } else if symbol.hasPrefix("_Z") {
            demangled = cxx.flatMap { demangle in symbol.withCString { demangle($0, nil, nil, nil) } }
        } else {
            return symbol
        }
        guard let demangled else { return symbol }
        defer { free(demangled) }
        return String(cString: demangled)
    }
}
