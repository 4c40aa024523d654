import Foundation
import StackTestSupport
import Testing

@Suite("fiberstacks frames")
struct FramesCommandTests {
    @Test("--guard 4096 exits 1 and names a function larger than the guard")
    func guardTooSmall() throws {
        let run = try runFiberstacks(["frames", "--guard", "4096", "--top", "5"])
        #expect(run.status == 1, "\(run.output)\(run.standardError)")
        let failure = try #require(run.output.components(separatedBy: "\n").firstIndex { $0.hasPrefix("FAIL:") }, "\(run.output)")
        let named = run.output.components(separatedBy: "\n")[(failure + 1)...].first ?? ""
        // "     33360 B             __CFSocketManager  [/path/libFoundation.so]"
        let bytes = Int(named.split(separator: " ").first ?? "") ?? 0
        #expect(bytes > 4096 && named.contains("[/"), "\(named)")
    }

    @Test("--guard 1GiB exits 0")
    func guardLargeEnough() throws {
        let run = try runFiberstacks(["frames", "--guard", "1GiB"])
        #expect(run.status == 0, "\(run.output)\(run.standardError)")
        #expect(run.output.contains("OK: every fixed frame fits in a 1 GiB guard"), "\(run.output)")
    }

    @Test("--json lists the largest frames with their keys, largest first")
    func json() throws {
        let run = try runFiberstacks(["frames", "--json", "--top", "50", "--guard", "64KiB"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any], "\(run.output)")
        let functions = try #require(json["functions"] as? [[String: Any]])
        #expect(functions.count == 50)
        for function in functions {
            #expect(Set(function.keys) == ["name", "object", "frame_bytes", "variable"], "\(function)")
        }
        let sizes = functions.compactMap { $0["frame_bytes"] as? Int }
        #expect(sizes == sizes.sorted(by: >) && sizes.count == 50)
        #expect((json["objects"] as? [String])?.contains { $0.contains("libswiftCore.so") } == true)
        #expect(json["guard_bytes"] as? Int == 65536)
        #expect((json["function_count"] as? Int ?? 0) > 1000)
        // The exit status agrees with what the report says about the guard.
        #expect(run.status == ((json["over_guard_count"] as? Int ?? 0) > 0 ? 1 : 0))
    }

    @Test("A binary given by path is audited alone")
    func binaryPath() throws {
        let run = try runFiberstacks(["frames", "--json", "--top", "3", fiberstacksBinary])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any], "\(run.output)")
        #expect(json["objects"] as? [String] == [fiberstacksBinary])
        #expect(run.status == 0)
    }

    @Test(
        "Bad values are usage errors that name the flag",
        arguments: [
            (["--guard", "2GiB"], "--guard"), (["--guard", "-1"], "--guard"), (["--guard", "12Q"], "--guard"),
            (["--guard", "99999999999999999999K"], "--guard"), (["--top", "0"], "--top"), (["--top", "1000001"], "--top"),
        ])
    func badValues(_ arguments: [String], _ flag: String) throws {
        let run = try runFiberstacks(["frames"] + arguments)
        #expect(run.status == 64, "\(run.output)")
        #expect(run.standardError.contains(flag), "\(run.standardError)")
    }

    @Test("A file that is not an object this audit reads is a usage error that names it and says what to give")
    func notAnObject() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fiberstacks-frames-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var elf32 = [UInt8](repeating: 0, count: 64)
        elf32.replaceSubrange(0..<6, with: [0x7f, 0x45, 0x4c, 0x46, 1, 1])
        let files: [(String, Data)] = [
            ("text", Data("not an object\n".utf8)), ("empty", Data()), ("short-elf", Data([0x7f, 0x45, 0x4c, 0x46])),
            ("elf32", Data(elf32)),
        ]
        var paths = [directory.path]
        for (name, contents) in files {
            let path = directory.appendingPathComponent(name).path
            try contents.write(to: URL(fileURLWithPath: path))
            paths.append(path)
        }
        for path in paths {
            let run = try runFiberstacks(["frames", path])
            #expect(run.status == 64, "\(path): \(run.status) \(run.standardError)")
            #expect(run.standardError.contains(path) && run.standardError.contains("ELF"), "\(run.standardError)")
        }
    }

    @Test("An unreadable binary is an error that says what to give")
    func unreadableBinary() throws {
        let run = try runFiberstacks(["frames", "/nonexistent/binary"])
        #expect(run.status == 64)
        #expect(run.standardError.contains("/nonexistent/binary") && run.standardError.contains("ELF"), "\(run.standardError)")
    }

    @Test("A FIFO no process writes to is refused at once, not waited on")
    func fifoWithoutWriter() throws {
        let path = "/tmp/fiberstacks-frames-fifo-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        #expect(mkfifo(path, 0o600) == 0, "mkfifo: errno \(errno)")
        defer { unlink(path) }
        let run = try runFiberstacks(["frames", path], timeLimit: 30)
        #expect(!run.timedOut && run.status == 64, "\(run.status): \(run.standardError)")
        #expect(run.standardError.contains("not a regular file"), "\(run.standardError)")
    }

    @Test("A truncated ELF file is a usage error naming the truncation, not an audit of nothing that passes --guard",
          arguments: [100, 4096, 70_000])
    func truncatedObject(_ bytes: Int) throws {
        let path = "/tmp/fiberstacks-frames-truncated-\(getpid())-\(bytes)"
        defer { unlink(path) }
        try Data(try Data(contentsOf: URL(fileURLWithPath: fiberstacksBinary)).prefix(bytes)).write(to: URL(fileURLWithPath: path))
        let run = try runFiberstacks(["frames", path, "--guard", "4096"])
        #expect(run.status == 64, "\(run.status): \(run.output) \(run.standardError)")
        #expect(run.standardError.contains("truncated") && !run.output.contains("OK"), "\(run.output) \(run.standardError)")
    }

    @Test("With --guard, an object from which no call frame record is read exits 1: NOT CHECKED, not OK")
    func nothingRead() throws {
        // A whole ELF header that names no program or section header: a valid object with nothing to audit.
        var header = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fiberstacksBinary)).prefix(64))
        header.replaceSubrange(56..<58, with: [0, 0])  // e_phnum
        header.replaceSubrange(60..<62, with: [0, 0])  // e_shnum
        let path = "/tmp/fiberstacks-frames-empty-\(getpid())"
        defer { unlink(path) }
        try Data(header).write(to: URL(fileURLWithPath: path))
        let run = try runFiberstacks(["frames", path, "--guard", "4096"])
        #expect(run.status == 1, "\(run.status): \(run.output) \(run.standardError)")
        #expect(run.output.contains("NOT CHECKED") && !run.output.contains("OK:"), "\(run.output)")
        let bare = try runFiberstacks(["frames", path])
        #expect(bare.status == 0 && bare.output.hasPrefix("0 functions in 1 object\n"), "\(bare.output)")
    }

    @Test("A binary given twice is audited once")
    func givenTwice() throws {
        let once = try runFiberstacks(["frames", fiberstacksBinary, "--top", "1"])
        let twice = try runFiberstacks(["frames", fiberstacksBinary, fiberstacksBinary, "--top", "1"])
        #expect(twice.status == 0 && twice.output.split(separator: "\n").first == once.output.split(separator: "\n").first,
                "\(once.output) / \(twice.output)")
        #expect(twice.output.contains(" in 1 object"), "\(twice.output)")
    }
}
