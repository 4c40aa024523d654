@_spi(Benchmarks) import OverflowDetection
import ArgumentParser
import Foundation
import Glibc
import Logging
import StackAllocators
@_spi(Benchmarks) import StackDiagnostics

/// `fiberstacks frames`: the largest stack frames of this program and its libraries (or of the given
/// binaries), and whether a guard of a given size covers them.
struct Frames: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the largest stack frames of this program and its libraries, or of the given binaries.",
        discussion: """
            A stack guard protects only if it is at least as large as the largest frame of the code that \
            runs on the stack: Swift emits no stack probes, so a larger frame can skip the guard. With \
            --guard, exits 1 when a fixed-size frame is larger than the guard (variable frames, which grow \
            at run time, are listed but cannot be checked), and when no call frame record could be read, \
            since then nothing shows that the guard covers the code.
            """)

    /// The largest `--guard` accepted.
    static let maximumGuard = 1 << 30

    @Argument(help: "ELF executables or shared libraries to audit (default: this program and every library it loaded).")
    var binaries: [String] = []

    @Option(
        name: .customLong("guard"),
        help: "Exit 1 when a fixed frame is larger than this guard: bytes, or a number with K, KiB, M, MiB, G or GiB (0...1 GiB).")
    var guardText: String?

    @Option(help: "How many of the largest frames to list (1...1000000).")
    var top = 20

    @Flag(help: "Print JSON: {\"functions\": [{\"name\", \"object\", \"frame_bytes\", \"variable\"}], ...}.")
    var json = false

    func validate() throws {
        guard (1...1_000_000).contains(top) else { throw ValidationError("--top must be in 1...1000000, not \(top)") }
        _ = try guardBytes
        for binary in binaries where access(binary, R_OK) != 0 {
            throw ValidationError(
                "cannot read \(binary): \(String(cString: strerror(errno))); give the path of an ELF executable or shared library")
        }
    }

    /// `--guard` in bytes, nil when not given.
    var guardBytes: Int? {
        get throws {
            guard let guardText else { return nil }
            guard let bytes = Self.parseSize(guardText), (0...Self.maximumGuard).contains(bytes) else {
                throw ValidationError(
                    "--guard must be a size in 0...1 GiB (bytes, or with K, KiB, M, MiB, G or GiB), not \"\(guardText)\"")
            }
            return bytes
        }
    }

    /// "4096", "64K", "64KiB", "1M", "1MiB", "1G", "1GiB" -> bytes; nil when malformed or overflowing.
    static func parseSize(_ text: String) -> Int? {
        let units: [(String, Int)] = [("KiB", 10), ("K", 10), ("MiB", 20), ("M", 20), ("GiB", 30), ("G", 30)]
        let (number, shift) = units.first { text.hasSuffix($0.0) }.map { (String(text.dropLast($0.0.count)), $0.1) } ?? (text, 0)
        guard let value = Int(number), value >= 0 else { return nil }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : bytes
    }

    /// The audit's logger: warnings only.
    static let logger: Logger = {
        var logger = Logger(label: "fiberstacks.frames")
        logger.logLevel = .warning
        return logger
    }()

    func run() throws {
        // A path given twice is audited once.
        let paths = binaries.enumerated().filter { binaries.firstIndex(of: $0.element) == $0.offset }.map(\.element)
        let audit = paths.isEmpty
            ? try FrameAudit.auditLoadedObjects(logger: Self.logger)
            : FrameAudit(merging: try paths.map(Self.audit))
        let limit = try guardBytes
        let overGuard = limit.map { limit in audit.functions.filter { !$0.isVariable && $0.frameBytes > limit } } ?? []
        if json {
            FileStream.standardOutput.writeLine(try encodeJSON(ReportEnvelope(
                schemaVersion: 1, report: FramesReport(audit: audit, top: top, guardBytes: limit, overGuard: overGuard))))
        } else {
            printReport(audit, guardBytes: limit, overGuard: overGuard)
        }
        if !overGuard.isEmpty || (limit != nil && audit.functions.isEmpty) { throw ExitCode(1) }
    }

    /// The audit of a binary given on the command line: one that is not an object the audit reads (a
    /// directory, an empty file, text, 32-bit ELF) is a usage error; a failing syscall stays an error.
    private static func audit(_ path: String) throws -> FrameAudit {
        do {
            return try FrameAudit.auditFile(path, logger: logger)
        } catch {
            guard case .objectUnreadable(_, _, errno: nil) = error.reason else { throw error }
            FileStream.standardError.write("Error: \(error)\n")
            throw ExitCode.validationFailure
        }
    }

    private func printReport(_ audit: FrameAudit, guardBytes: Int?, overGuard: [FrameRecord]) {
        FileStream.standardOutput.writeLine(
            "\(count(audit.functions.count, "function")) in \(count(audit.objects.count, "object"))"
            + (audit.malformedEntries > 0 ? " (\(audit.malformedEntries) unreadable call frame records skipped)" : ""))
        printFrames(Array(audit.functions.prefix(top)))
        guard let guardBytes else { return }
        let guardText = formatByteCount(guardBytes)
        if audit.functions.isEmpty {
            FileStream.standardOutput.writeLine("\nNOT CHECKED: no call frame record was read from \(audit.objects.joined(separator: ", ")), "
                + "so nothing shows that a \(guardText) guard covers its frames (an object without .eh_frame, or a damaged one)")
        } else if overGuard.isEmpty {
            FileStream.standardOutput.writeLine("\nOK: every fixed frame fits in a \(guardText) guard"
                + (audit.largestFixedFrame.map { " (largest: \($0.frameBytes) B, \($0.name))" } ?? ""))
        } else {
            FileStream.standardOutput.writeLine("\nFAIL: \(overGuard.count) fixed frames are larger than the \(guardText) guard; raise the guard above "
                + "\(overGuard[0].frameBytes) B or move their locals to the heap:")
            printFrames(Array(overGuard.prefix(top)))
        }
    }

    /// "1 object", "2 objects".
    private func count(_ number: Int, _ noun: String) -> String { "\(number) \(noun)\(number == 1 ? "" : "s")" }

    private func printFrames(_ records: [FrameRecord]) {
        for record in records {
            let variable = record.isVariable ? " + variable" : "           "
            FileStream.standardOutput.writeLine(String(format: "%10d B", record.frameBytes) + "\(variable)  \(record.name)  [\(record.object)]")
        }
    }
}

/// What `frames --json` prints.
struct FramesReport: Encodable {
    struct Function: Encodable {
        let name: String
        let object: String
        let frameBytes: Int
        let variable: Bool

        init(_ record: FrameRecord) {
            (name, object, frameBytes, variable) = (record.name, record.object, record.frameBytes, record.isVariable)
        }

        enum CodingKeys: String, CodingKey {
            case name, object, variable
            case frameBytes = "frame_bytes"
        }
    }

    let functions: [Function]
    let functionCount: Int
    let objects: [String]
    let malformedEntries: Int
    let largestFixedFrame: Function?
    let guardBytes: Int?
    /// The fixed frames larger than the guard, largest first (at most `--top`).
    let overGuard: [Function]
    let overGuardCount: Int

    init(audit: FrameAudit, top: Int, guardBytes: Int?, overGuard: [FrameRecord]) {
        functions = audit.functions.prefix(top).map(Function.init)
        functionCount = audit.functions.count
        objects = audit.objects
        malformedEntries = audit.malformedEntries
        largestFixedFrame = audit.largestFixedFrame.map(Function.init)
        self.guardBytes = guardBytes
        self.overGuard = overGuard.prefix(top).map(Function.init)
        overGuardCount = overGuard.count
    }

    enum CodingKeys: String, CodingKey {
        case functions, objects
        case functionCount = "function_count"
        case malformedEntries = "malformed_entries"
        case largestFixedFrame = "largest_fixed_frame"
        case guardBytes = "guard_bytes"
        case overGuard = "over_guard"
        case overGuardCount = "over_guard_count"
    }
}
