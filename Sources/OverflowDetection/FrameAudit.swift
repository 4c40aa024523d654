import CStackSupport
import Glibc
import GuardPages
import Logging

/// One function of an audited object and the stack its frame takes.
public struct FrameRecord: Sendable {
    /// The function's link-time address in its object.
    package let address: UInt64
    /// How far below the stack pointer of its caller the function's frame reaches, in bytes (on
    /// x86_64 this includes the return address). For a variable frame, the fixed part only.
    public let frameBytes: Int
    /// The frame also grows at run time (alloca, a variable-length array, dynamic realignment), so
    /// no guard size can be proven to cover it.
    public let isVariable: Bool
    /// The object's path and the symbol's bytes among its names: records share one per object rather
    /// than holding strings each, which keeps auditing a process's hundred thousand functions fast.
    private let source: AuditedObject
    private let nameStart: UInt32
    private let nameEnd: UInt32

    init(address: UInt64, frameBytes: Int, isVariable: Bool, source: AuditedObject, name: Range<UInt32>) {
        (self.address, self.frameBytes, self.isVariable) = (address, frameBytes, isVariable)
        (self.source, nameStart, nameEnd) = (source, name.lowerBound, name.upperBound)
    }

    /// The path of the object that holds the function ("[vdso]" for the kernel's virtual object).
    public var object: String { source.path }

    /// The symbol as the object stores it (mangled), or "" when no symbol covers the function.
    package var symbol: String { String(decoding: source.names[Int(nameStart)..<Int(nameEnd)], as: UTF8.self) }

    /// The demangled symbol (Swift and C++), or the address in hex. Demangled on each call: only the
    /// functions shown need a readable name.
    public var name: String {
        nameStart == nameEnd ? "0x" + String(address, radix: 16) : Demangler.demangle(symbol)
    }

}

/// An audited object's path, and the symbol names of its functions copied out of its string table.
final class AuditedObject: Sendable {
    let path: String
    let names: [UInt8]

    init(path: String, names: [UInt8]) {
        self.path = path
        self.names = names
    }
}

/// The stack frames of the functions of ELF objects, read from their call frame information
/// (`.eh_frame`) and, where a function keeps a frame pointer, from its prologue.
///
/// Swift emits no stack probes: a function enters its frame with one stack pointer subtraction and
/// can skip over a guard smaller than that frame without touching it. A stack guard protects only if
/// it is at least `largestFixedFrame.frameBytes` of the code the fibers run.
public struct FrameAudit: Sendable {
    /// Every function with call frame information, largest frame first.
    public let functions: [FrameRecord]
    /// The objects audited.
    @_spi(Benchmarks) public let objects: [String]
    /// Call frame records that could not be read and were skipped.
    public let malformedEntries: Int

    /// The largest frame whose size is fixed.
    public var largestFixedFrame: FrameRecord? { functions.first { !$0.isVariable } }

    /// Audits the ELF executable or shared library at `path` (64-bit little-endian, x86_64 or aarch64).
    /// Throws `StackError.objectUnreadable` when it cannot be read or is not such an object; damaged
    /// call frame records are skipped and counted in `malformedEntries`.
    public static func auditFile(_ path: String, logger: Logger = Logger(label: "fiberstacks.frames")) throws(StackError)
        -> FrameAudit
    {
        let file = try MappedFile(path, logger: logger)
        // Everything below reads the mapping: it must outlive the reads, not just the last use of `file`.
        return try withExtendedLifetime(file) { () throws(StackError) in
            guard let elf = ELFFile(file.bytes) else {
                throw .objectUnreadable(path: path, reason: ELFFile.problem(file.bytes) ?? "unknown", errno: nil)
            }
            let auditor = ObjectAuditor(
                object: path, machine: elf.machine, space: elf.fileAddressSpace, bias: 0, logger: logger)
            let frames = elf.frameHeaderAddress == nil ? elf.section(named: ".eh_frame") : nil
            var records: [FrameRecord] = []
            let malformed = auditor.read(
                header: elf.frameHeaderAddress, frames: frames.map { ($0.sh_addr, $0.sh_size) },
                symbols: SymbolTable(elf), into: &records)
            return FrameAudit(records: records, objects: [path], malformed: malformed)
        }
    }

    /// Audits this process's executable and every object it has loaded, reading their call frame
    /// information and code in memory and their symbols from their files. Throws when the
    /// executable's own file cannot be read (/proc/self/exe).
    ///
    /// The loader's lock is held only while the list of objects is copied: the Swift runtime's type
    /// lookups and the unwinder take it too. Each shared library is kept loaded while it is read by a
    /// reference of its own (`dlopen` with `RTLD_NOLOAD`); one unloaded meanwhile is skipped.
    public static func auditLoadedObjects(logger: Logger = Logger(label: "fiberstacks.frames")) throws(StackError)
        -> FrameAudit
    {
        let walk = LoadedObjectWalk(logger: logger)
        for object in LoadedObject.all() {
            let pinned = object.isExecutable || object.isVDSO ? nil : dlopen(object.name, RTLD_NOLOAD | RTLD_LAZY)
            guard pinned != nil || object.isExecutable || object.isVDSO else { continue }
            defer { if let pinned { dlclose(pinned) } }
            walk.audit(object)
        }
        if let error = walk.error { throw error }
        return FrameAudit(records: walk.records, objects: walk.objects, malformed: walk.malformed)
    }

    /// `auditLoadedObjects()`, run once per process on first use (thread-safe) and kept: the objects a
    /// process loads rarely change, and the audit reads tens of megabytes.
    package static var loadedObjects: Result<FrameAudit, StackError> { cachedLoadedObjects }

    private static let cachedLoadedObjects = Result { () throws(StackError) in try auditLoadedObjects() }

    /// One audit of all the objects of `audits`.
    package init(merging audits: [FrameAudit]) {
        self.init(
            records: audits.flatMap(\.functions), objects: audits.flatMap(\.objects),
            malformed: audits.reduce(0) { $0 + $1.malformedEntries })
    }

    private init(records: consuming [FrameRecord], objects: [String], malformed: Int) {
        records.sort { $0.frameBytes > $1.frameBytes }  // stable: equal frames keep the objects' order
        functions = records
        self.objects = objects
        self.malformedEntries = malformed
    }
}

/// Audits one object: runs the CFI reader over it and turns each description into a record.
struct ObjectAuditor {
    let object: String
    let machine: FrameMachine
    let space: AddressSpace
    let bias: UInt64
    let logger: Logger

    /// Reads the functions through the `.eh_frame_hdr` at `header`, or by walking `.eh_frame` (at
    /// the address the header gives, or `frames`: the section's address and size), appending to
    /// `records`. Returns the number of malformed call frame records skipped.
    func read(header: UInt64?, frames: (UInt64, UInt64)?, symbols: SymbolTable, into records: inout [FrameRecord]) -> Int {
        var reader = CallFrameReader(space: space, machine: machine, bias: bias)
        var walkFrom = frames
        if let header {
            let (indexed, start) = reader.readIndexed(header: header)
            if !indexed, let start { walkFrom = (start, .max) }
        }
        if let (start, size) = walkFrom {
            logger.debug(
                "no sorted .eh_frame_hdr table: walking .eh_frame record by record", metadata: ["object": "\(object)"])
            reader.walk(from: start, limit: size)
        }
        var found: [(bytes: Int, variable: Bool, name: Range<UInt32>)] = []
        found.reserveCapacity(reader.descriptions.count)
        var nameBytes: [UInt8] = []
        var symbolIndex = 0
        var scanBudget = 2 * space.size  // as the reader's: overlapping function ranges cannot make it quadratic
        for description in reader.descriptions {
            let (bytes, variable) = frame(description, scanBudget: &scanBudget)
            let start = UInt32(truncatingIfNeeded: nameBytes.count)
            if nameBytes.count < Int(UInt32.max) - 1 << 16 {  // names past 4 GiB: unnamed
                nameBytes.append(contentsOf: symbols.name(at: description.start, hint: &symbolIndex).prefix(1 << 16))
            }
            found.append((bytes, variable, start..<UInt32(truncatingIfNeeded: nameBytes.count)))
        }
        let source = AuditedObject(path: object, names: nameBytes)
        for (description, function) in zip(reader.descriptions, found) {
            records.append(FrameRecord(
                address: description.start, frameBytes: function.bytes, isVariable: function.variable, source: source,
                name: function.name))
        }
        return reader.malformed
    }

    /// The frame size of the function `description` describes, and whether it is variable.
    private func frame(_ description: FrameDescription, scanBudget: inout Int) -> (Int, Bool) {
        guard let framePointerFrom = description.framePointerFrom, let code = space.bytes(at: description.start) else {
            return (Int(description.stackPointerOffset), description.variable)
        }
        let length = Int(min(description.length, UInt64(code.remaining), 1 << 16))
        let body = UnsafeRawBufferPointer(rebasing: code.bytes[code.offset..<code.offset + length])
        // x86_64 CFI marks the frame pointer set-up exactly, and the locals are allocated right after
        // the callee-saved pushes that follow it; aarch64 CFI often comes after the whole prologue, so
        // its prologue is read from the start (up to its first branch).
        let (from, window) = machine == .x86_64 ? (Int(min(framePointerFrom, UInt64(length))), 64) : (0, 256)
        let prologue = UnsafeRawBufferPointer(rebasing: body[from..<min(from + window, length)])
        let adjustment = PrologueDecoder.stackAdjustment(prologue, machine: machine)
        let saved = Int(max(description.stackPointerOffset, description.deepestSave))
        let bytes = machine == .x86_64 ? saved + adjustment : max(saved, adjustment)
        scanBudget -= length
        let resizes = scanBudget >= 0 && PrologueDecoder.resizesAtRunTime(body, machine: machine)
        return (bytes, description.variable || resizes)
    }
}
