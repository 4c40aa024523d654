import CStackSupport
import Glibc
import GuardPages
import Logging
import SystemPackage

/// One object loaded in this process, copied out of the loader's list (`dl_iterate_phdr`).
struct LoadedObject {
    /// Where it is loaded, relative to its link-time addresses.
    let bias: UInt64
    /// Its path as the loader knows it ("" for the executable).
    let name: String
    /// Its program headers.
    let headers: [Elf64_Phdr]

    var isExecutable: Bool { name.isEmpty }
    /// The kernel's virtual object, which has no file and is never unloaded.
    var isVDSO: Bool { bias != 0 && UInt(bias) == fs_vdso_base() }

    /// Every object loaded now, in the loader's order.
    static func all() -> [LoadedObject] {
        var objects: [LoadedObject] = []
        withUnsafeMutablePointer(to: &objects) { list in
            _ = fs_loaded_objects_iterate(
                { object, context in
                    guard let object = object?.pointee, let context, let first = object.headers else { return 0 }
                    context.assumingMemoryBound(to: [LoadedObject].self).pointee.append(
                        LoadedObject(
                            bias: UInt64(object.bias), name: object.name.map { String(cString: $0) } ?? "",
                            headers: Array(UnsafeBufferPointer(start: first, count: Int(object.header_count)))))
                    return 0
                }, list)
        }
        return objects
    }
}

/// The state of one walk over this process's objects, audited one at a time.
final class LoadedObjectWalk {
    private let logger: Logger
    private(set) var records: [FrameRecord] = []
    private(set) var objects: [String] = []
    private(set) var malformed = 0
    /// Set when the executable's own file could not be read.
    private(set) var error: StackError?

    init(logger: Logger) {
        self.logger = logger
    }

    /// Audits `object`, which must stay loaded meanwhile.
    func audit(_ object: LoadedObject) {
        let headers = object.headers
        let bias = object.bias
        var space = AddressSpace()
        for header in headers where header.p_type == PT_LOAD && header.p_flags & UInt32(PF_R) != 0 {
            let start = UnsafeRawPointer(bitPattern: UInt(bias &+ header.p_vaddr))
            let bytes = UnsafeRawBufferPointer(start: start, count: Int(header.p_filesz))
            space.segments.append(AddressSpace.Segment(address: header.p_vaddr, bytes: bytes))
        }
        guard let header = headers.first(where: { $0.p_type == PT_GNU_EH_FRAME })?.p_vaddr else { return }
        let name = object.name
        let isVDSO = object.isVDSO
        let path = isVDSO ? "[vdso]" : name.isEmpty ? executablePath() : name
        let auditor = ObjectAuditor(object: path, machine: .host, space: space, bias: bias, logger: logger)
        if isVDSO {
            // The kernel's object has no file; its whole image is mapped, in whole pages, with the
            // section headers after its loadable part.
            let loads = headers.filter { $0.p_type == PT_LOAD }
            let loaded = loads.map { Int($0.p_offset + $0.p_filesz) }.max() ?? 0
            let extent = (loaded + systemPageSize - 1) / systemPageSize * systemPageSize
            let image = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(bias)), count: extent)
            let symbols = ELFFile(image).map { SymbolTable($0) } ?? SymbolTable()
            malformed += auditor.read(header: header, frames: nil, symbols: symbols, into: &records)
        } else {
            do throws(StackError) {
                let file = try MappedFile(name.isEmpty ? "/proc/self/exe" : name, logger: logger)
                withExtendedLifetime(file) {  // the symbol table points into the mapping
                    let symbols = ELFFile(file.bytes).map { SymbolTable($0) } ?? SymbolTable()
                    malformed += auditor.read(header: header, frames: nil, symbols: symbols, into: &records)
                }
            } catch {
                if name.isEmpty { self.error = error }
                logger.notice(
                    "the symbols of a loaded object are not readable; its functions are named by address",
                    metadata: ["object": "\(path)", "error": "\(error)"])
                malformed += auditor.read(header: header, frames: nil, symbols: SymbolTable(), into: &records)
            }
        }
        objects.append(path)
    }

    /// The executable's path, as /proc/self/exe links to it (or that link's name, logged, when it
    /// cannot be read).
    private func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else {
            logger.notice(
                "readlink of /proc/self/exe failed; the executable is named /proc/self/exe",
                metadata: ["errno": "\(Errno(rawValue: errno))"])
            return "/proc/self/exe"
        }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
