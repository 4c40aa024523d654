@_spi(Benchmarks) import OverflowDetection
import CFrameFixtures
import Foundation
import Glibc
@testable import GuardPages
@testable import OverflowDetection
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// 40 KiB of locals, written and handed to an opaque C function so the array stays in the frame.
@inline(never)
func swiftFrame40KiB(_ seed: UInt8) -> Int {
    var buffer = InlineArray<40960, UInt8>(repeating: seed)
    buffer[Int(seed) % 40960] = seed &+ 1
    return buffer.span.withUnsafeBytes { fs_fixture_consume($0.baseAddress, $0.count) }
}

/// Functions with 200 KiB of locals, in Swift and in C. They are compiled into a library of their own
/// when a test needs them, never linked into this process: a scheduler started by the other tests would
/// (rightly) refuse its 64 KiB guards in a process that has a 200 KiB frame.
private enum LargeFrameFixtures {
    static let swift = """
        @inline(never) public func consume(_ bytes: UnsafeRawBufferPointer) -> Int { Int(bytes[bytes.count / 2]) }

        @inline(never) public func swiftFrame200KiB(_ seed: UInt8) -> Int {
            var buffer = InlineArray<204800, UInt8>(repeating: seed)
            buffer[Int(seed) % 204800] = seed &+ 1
            return buffer.span.withUnsafeBytes { consume($0) }
        }
        """
    static let c = """
        #include <stddef.h>
        size_t fs_fixture_consume(const void *bytes, size_t count);
        __attribute__((noinline)) size_t fs_fixture_frame_200k(size_t seed) {
            unsigned char buffer[200 << 10];
            for (size_t i = 0; i < sizeof buffer; i += 4096) buffer[i] = (unsigned char)(seed + i);
            return fs_fixture_consume(buffer, sizeof buffer);
        }
        size_t fs_fixture_consume(const void *bytes, size_t count) { return ((const volatile unsigned char *)bytes)[count / 2]; }
        """

    /// Compiles `source` with `compiler` into a shared library in `directory`; returns its path.
    static func library(_ source: String, named name: String, compiler: [String], in directory: String) throws -> String {
        let sourcePath = "\(directory)/\(name)", libraryPath = "\(directory)/lib\(name).so"
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        let run = try ChildProcess.run("/usr/bin/env", compiler + ["-o", libraryPath, sourcePath], timeLimit: 120)
        #expect(run.status == 0, "\(compiler): \(run.standardError)")
        return libraryPath
    }
}

/// The test binary's own path, as the audit names it.
private let testBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path

/// The frame audit of the functions with known frames, read from this process and from its file.
@Suite("Frame audit")
struct FrameAuditTests {
    /// The two ways to audit the test binary: in memory with every loaded object, and as a file.
    enum Source: String, CaseIterable, CustomTestStringConvertible {
        case loaded, file
        var testDescription: String { rawValue }

        func audit() throws -> FrameAudit {
            switch self {
            case .loaded: try FrameAudit.loadedObjects.get()
            case .file: try FrameAudit.auditFile("/proc/self/exe")
            }
        }
    }

    /// The test binary's record of the function whose raw symbol satisfies `matches`.
    func record(in audit: FrameAudit, _ matches: (String) -> Bool) throws -> FrameRecord {
        let found = audit.functions.filter { matches($0.symbol) && ($0.object == testBinary || $0.object == "/proc/self/exe") }
        #expect(found.count == 1, "\(found)")
        return try #require(found.first)
    }

    /// Whether `symbol` is the test function `name` itself (not a closure inside it).
    func isSwiftFunction(_ symbol: String, _ name: String) -> Bool {
        symbol.contains(name) && Demangler.demangle(symbol).hasPrefix("GuardPagesTests.\(name)(")
    }

    @Test("Fixed frames of 40 KiB (Swift and C) are found within 512 bytes", needsUninstrumentedFrames, arguments: Source.allCases)
    func knownFrames(_ source: Source) throws {
        // Called once, so the stack really holds these frames and nothing is optimized away.
        #expect(swiftFrame40KiB(1) > 0)
        #expect(fs_fixture_frame_40k(1) > 0)
        let audit = try source.audit()
        let cases: [(String, (String) -> Bool, Int)] = [
            ("C 40 KiB", { $0 == "fs_fixture_frame_40k" }, 40 << 10),
            ("Swift 40 KiB", { isSwiftFunction($0, "swiftFrame40KiB") }, 40 << 10),
        ]
        for (label, matches, locals) in cases {
            let found = try record(in: audit, matches)
            #expect(!found.isVariable, "\(label)")
            #expect((locals...locals + 512).contains(found.frameBytes), "\(label): \(found.frameBytes) B for \(locals) B of locals")
        }
        #expect(audit.largestFixedFrame.map { $0.frameBytes >= 48 << 10 } == true)
        #expect(audit.functions.first!.frameBytes >= audit.functions.last!.frameBytes)
    }

    @Test("Fixed frames of 200 KiB (Swift and C, compiled into libraries) are found within 512 bytes")
    func largeFramesInLibraries() throws {
        let template = try #require(strdup("/tmp/fiberstacks-frames-XXXXXX"))
        defer { free(template) }
        let directory = try #require(mkdtemp(template).map { String(cString: $0) })
        defer { #expect((try? FileManager.default.removeItem(atPath: directory)) != nil, "\(directory) left behind") }
        let swift = try LargeFrameFixtures.library(
            LargeFrameFixtures.swift, named: "frames.swift",
            compiler: ["swiftc", "-Onone", "-emit-library", "-module-name", "LargeFrames"], in: directory)
        let c = try LargeFrameFixtures.library(
            LargeFrameFixtures.c, named: "frames.c", compiler: ["cc", "-O1", "-shared", "-fPIC"], in: directory)
        let cases: [(String, String, (String) -> Bool)] = [
            ("Swift 200 KiB", swift, { Demangler.demangle($0).hasPrefix("LargeFrames.swiftFrame200KiB(") }),
            ("C 200 KiB", c, { $0 == "fs_fixture_frame_200k" }),
        ]
        for (label, path, matches) in cases {
            let audit = try FrameAudit.auditFile(path)
            let found = audit.functions.filter { matches($0.symbol) }
            #expect(found.count == 1, "\(label): \(found)")
            let frame = try #require(found.first)
            #expect(!frame.isVariable, "\(label)")
            #expect((200 << 10...(200 << 10) + 512).contains(frame.frameBytes), "\(label): \(frame.frameBytes) B")
            #expect(audit.largestFixedFrame?.address == frame.address, "\(label)")
        }
    }

    @Test("A frame-pointer function is measured through its prologue", needsUninstrumentedFrames, arguments: Source.allCases)
    func framePointerPrologue(_ source: Source) throws {
        #expect(fs_fixture_frame_pointer_24k(1) > 0)
        // The code itself must set up a frame pointer, or this test proves nothing about prologues.
        let code = unsafeBitCast(fs_fixture_frame_pointer_24k as @convention(c) (Int) -> Int, to: UnsafePointer<UInt8>.self)
        let start = Array(UnsafeBufferPointer(start: code, count: 16))
        #if arch(x86_64)
        let pushRBP: [UInt8] = [0x55, 0x48, 0x89, 0xe5]  // push rbp; mov rbp, rsp
        #expect((0...4).contains { Array(start[$0..<$0 + 4]) == pushRBP }, "\(start)")
        #endif
        let found = try record(in: try source.audit()) { $0 == "fs_fixture_frame_pointer_24k" }
        #expect(!found.isVariable)
        #expect((24 << 10...(24 << 10) + 512).contains(found.frameBytes), "\(found.frameBytes)")
    }

    @Test("A stack-pointer-only frame is read from the CFI exactly", arguments: Source.allCases)
    func stackPointerCFI(_ source: Source) throws {
        let found = try record(in: try source.audit()) { $0 == "fs_fixture_cfi_48k" }
        #if arch(x86_64)
        #expect(found.frameBytes == 48 << 10 + 8)  // and the return address
        #else
        #expect(found.frameBytes == 48 << 10)
        #endif
        #expect(!found.isVariable)
    }

    @Test("A variable-length array makes a variable frame", arguments: Source.allCases)
    func variableFrame(_ source: Source) throws {
        #expect(fs_fixture_variable_frame(100) >= 0)
        let found = try record(in: try source.audit()) { $0 == "fs_fixture_variable_frame" }
        #expect(found.isVariable)
    }

    @Test("The loaded-object audit names objects, demangles, and is computed once")
    func loadedObjects() throws {
        let audit = try FrameAudit.loadedObjects.get()
        #expect(audit.objects.contains(testBinary))
        #expect(audit.objects.contains { $0.contains("libswiftCore.so") })
        #expect(audit.objects.contains { $0.contains("libc.so") })
        // The kernel's vDSO has no file: it is read in memory, its symbols too.
        #expect(audit.functions.contains { $0.object == "[vdso]" && $0.symbol.contains("clock_gettime") })
        let swift = try record(in: audit) { isSwiftFunction($0, "swiftFrame40KiB") }
        #expect(swift.name.hasPrefix("GuardPagesTests.swiftFrame40KiB("), "\(swift.name)")
        #expect(audit.malformedEntries == 0)
        // The same value comes back: the audit ran once.
        #expect(try FrameAudit.loadedObjects.get().functions.count == audit.functions.count)
    }

    @Test("Files that are not audit-able ELF objects throw objectUnreadable")
    func unreadableFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("frame-audit-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases: [(String, Data?)] = [
            ("empty", Data()),
            ("text", Data("#!/bin/sh\necho hello\n".utf8)),
            ("elf32", Data([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1] + [UInt8](repeating: 0, count: 57))),
            ("missing", nil),
        ]
        for (name, contents) in cases {
            let path = directory.appendingPathComponent(name).path
            if let contents { try contents.write(to: URL(fileURLWithPath: path)) }
            #expect(unreadablePath(path) == path, "\(name)")
        }
        #expect(unreadablePath(directory.path) == directory.path)
    }

    /// The path `objectUnreadable` names when auditing `path` fails, nil when it does not fail so.
    /// (A do/catch rather than `#expect(throws:)`: Swift 6.3 crashes releasing a typed error thrown
    /// through a closure that returns a value there.)
    private func unreadablePath(_ path: String) -> String? {
        do {
            _ = try FrameAudit.auditFile(path)
            return nil
        } catch {
            guard case .objectUnreadable(let reported, _, _) = error.reason else { return nil }
            return reported
        }
    }

    @Test("Truncated and corrupted objects give an error or an audit, never a crash or a hang")
    func corruptedObjects() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: "/bin/true"))
        let frameHeader = try Self.frameHeader(of: [UInt8](original)).offset
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("frame-audit-mutant-\(getpid())").path
        defer { unlink(path) }
        var generator = XorShift(state: 0x5eed_1234_abcd)
        var (audited, skippedRecords) = (0, 0)
        var mutants: [Data] = (1..<32).map { original.prefix(original.count * $0 / 32) }
        for _ in 0..<300 {
            var bytes = [UInt8](original)
            for _ in 0..<Int(generator.next() % 32 + 1) {
                // Mostly in the call frame information (.eh_frame_hdr, then .eh_frame), else anywhere.
                let cfi = generator.next() % 4 != 0 && frameHeader < bytes.count
                let position = cfi
                    ? frameHeader + Int(generator.next() % UInt64(min(6000, bytes.count - frameHeader)))
                    : Int(generator.next() % UInt64(bytes.count))
                bytes[position] = UInt8(truncatingIfNeeded: generator.next())
            }
            mutants.append(Data(bytes))
        }
        for mutant in mutants {
            try mutant.write(to: URL(fileURLWithPath: path))
            if let audit = try? FrameAudit.auditFile(path) {
                audited += 1
                skippedRecords += audit.malformedEntries > 0 ? 1 : 0
                #expect(audit.functions.allSatisfy { $0.frameBytes >= 0 })
            }
        }
        // Damaged records were met, and skipped without losing the rest of the audit.
        #expect(audited > 0 && skippedRecords > 0, "\(audited) audited, \(skippedRecords) with skipped records")
        let intact = try FrameAudit.auditFile("/bin/true")
        #expect(intact.functions.count > 0 && intact.malformedEntries == 0)
    }

    @Test("Without .eh_frame_hdr's table, or without .eh_frame_hdr, walking .eh_frame finds the same frames")
    func walkWithoutTable() throws {
        let reference = try FrameAudit.auditFile("/bin/true")
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "/bin/true")))
        let (entry, frameHeaderOffset) = try Self.frameHeader(of: original)
        var noTable = original
        noTable[frameHeaderOffset + 3] = 0xff  // the table's encoding: DW_EH_PE_omit
        var noHeader = original
        noHeader.replaceSubrange(entry..<entry + 4, with: [0, 0, 0, 0])  // PT_GNU_EH_FRAME -> PT_NULL
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("frame-audit-walk-\(getpid())").path
        defer { unlink(path) }
        func frames(_ audit: FrameAudit) -> Set<[UInt64]> { Set(audit.functions.map { [$0.address, UInt64($0.frameBytes)] }) }
        #expect(reference.functions.count > 10)
        for variant in [noTable, noHeader] {
            try Data(variant).write(to: URL(fileURLWithPath: path))
            let walked = try FrameAudit.auditFile(path)
            #expect(frames(walked) == frames(reference))
            #expect(walked.malformedEntries == 0)
        }
    }

    /// Where `file` (an ELF object) keeps its `PT_GNU_EH_FRAME` program header, and the file offset of
    /// the `.eh_frame_hdr` it points at.
    static func frameHeader(of file: [UInt8]) throws -> (entry: Int, offset: Int) {
        try file.withUnsafeBytes { file in
            let header = file.loadUnaligned(as: Elf64_Ehdr.self)
            let entries = (0..<Int(header.e_phnum)).map { Int(header.e_phoff) + $0 * Int(header.e_phentsize) }
            func programHeader(_ entry: Int) -> Elf64_Phdr { file.loadUnaligned(fromByteOffset: entry, as: Elf64_Phdr.self) }
            let entry = try #require(entries.first { programHeader($0).p_type == PT_GNU_EH_FRAME })
            return (entry, Int(programHeader(entry).p_offset))
        }
    }

    @Test("LEB128 and pointer encodings read as DWARF defines them; truncation reads nil")
    func cursorEncodings() {
        func read<T>(_ bytes: [UInt8], _ body: (inout ByteCursor) -> T) -> T {
            bytes.withUnsafeBytes { raw in
                var cursor = ByteCursor(raw, address: 0x1000)
                return body(&cursor)
            }
        }
        #expect(read([0xe5, 0x8e, 0x26]) { $0.uleb() } == 624_485)
        #expect(read([0x7f]) { $0.sleb() } == -1)
        #expect(read([0xc0, 0xbb, 0x78]) { $0.sleb() } == -123_456)
        #expect(read([0x80, 0x80]) { $0.uleb() } == nil)
        #expect(read([0xfc, 0xff, 0xff, 0xff]) { $0.pointer(0x1b) } == 0x0ffc)  // pcrel | sdata4: 0x1000 - 4
        #expect(read([0x10, 0x00, 0x00, 0x00]) { $0.pointer(0x3b, dataBase: 0x2000) } == 0x2010)  // datarel
        #expect(read([0x10, 0x00]) { $0.pointer(0x03) } == nil)  // udata4, truncated
    }

    @Test("aarch64 prologues: sub sp and pre-indexed stores add up; mov sp, xN is variable")
    func arm64Prologue() {
        func code(_ words: [UInt32]) -> [UInt8] { words.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } }
        let prologue = code([
            0xa9be_7bfd,  // stp x29, x30, [sp, #-32]!
            0x9100_03fd,  // mov x29, sp
            0xd140_13ff,  // sub sp, sp, #4, lsl #12
            0xd101_03ff,  // sub sp, sp, #64
            0x9400_0000,  // bl (the prologue ends)
            0xd101_03ff,  // sub sp, sp, #64 (not counted)
        ])
        #expect(prologue.withUnsafeBytes { PrologueDecoder.stackAdjustment($0, machine: .aarch64) } == 32 + 16384 + 64)
        let alloca = code([0xcb28_63ff])  // sub sp, sp, x8
        #expect(alloca.withUnsafeBytes { PrologueDecoder.resizesAtRunTime($0, machine: .aarch64) })
        let movSP = code([0x9100_011f])  // mov sp, x8
        #expect(movSP.withUnsafeBytes { PrologueDecoder.resizesAtRunTime($0, machine: .aarch64) })
        let epilogue = code([0x9100_03bf])  // mov sp, x29
        #expect(!epilogue.withUnsafeBytes { PrologueDecoder.resizesAtRunTime($0, machine: .aarch64) })
    }

    @Test("x86_64 prologues: sub, add of a negative and lea forms; alloca and realignment are variable")
    func x86Prologue() {
        let cases: [([UInt8], Int)] = [
            ([0x48, 0x83, 0xec, 0x28], 40),  // sub rsp, 40
            ([0x41, 0x57, 0x48, 0x81, 0xec, 0x00, 0xa0, 0x00, 0x00], 40960),  // push r15; sub rsp, 40960
            ([0x48, 0x83, 0xc4, 0x80], 128),  // add rsp, -128
            ([0x48, 0x8d, 0xa4, 0x24, 0x00, 0x80, 0xff, 0xff], 32768),  // lea rsp, [rsp - 32768]
            ([0x48, 0x89, 0xe5, 0x53], 0),  // mov rbp, rsp; push rbx
        ]
        for (bytes, expected) in cases {
            #expect(bytes.withUnsafeBytes { PrologueDecoder.stackAdjustment($0, machine: .x86_64) } == expected, "\(bytes)")
        }
        for bytes: [UInt8] in [[0x48, 0x83, 0xe4, 0xe0], [0x48, 0x29, 0xc4], [0x48, 0x89, 0xc4], [0x4c, 0x89, 0xc4]] {
            #expect(bytes.withUnsafeBytes { PrologueDecoder.resizesAtRunTime($0, machine: .x86_64) }, "\(bytes)")
        }
        for bytes: [UInt8] in [[0x48, 0x89, 0xec], [0x48, 0x8b, 0xe5], [0x48, 0x83, 0xec, 0x10]] {
            #expect(!bytes.withUnsafeBytes { PrologueDecoder.resizesAtRunTime($0, machine: .x86_64) }, "\(bytes)")
        }
    }
}

