import Foundation
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// Output the tool cannot write: a full disk, or standard output closed by the caller. The command must
/// not end with exit 0 as if its report had been delivered, and must not write its table into a file it
/// opened in standard output's place.
@Suite("fiberstacks output that cannot be written")
struct StandardOutputTests {
    /// Runs the tool with `arguments` through /bin/sh, with `redirection` applied to it.
    static func run(_ arguments: [String], redirection: String) throws -> ChildProcess.Outcome {
        try ChildProcess.run("/bin/sh", ["-c", "exec \"$0\" \"$@\" \(redirection)", fiberstacksBinary] + arguments, timeLimit: 300)
    }

    @Test(
        "Standard output on a full device: exit 70, naming standard output and ENOSPC",
        .enabled(if: access("/dev/full", W_OK) == 0, "needs a writable /dev/full"),
        arguments: [["doctor"], ["doctor", "--json"], ["frames", "--top", "3"], ["--help"], ["--version"],
                    ["verify", "--json", "--million-stacks", "1000"]])
    func fullDevice(_ arguments: [String]) throws {
        let run = try Self.run(arguments, redirection: "> /dev/full")
        #expect(run.status == 70, "\(arguments): \(run.standardError)")
        #expect(run.standardError.contains("standard output: cannot write to it: No space left on device (errno 28)"),
                "\(arguments): \(run.standardError)")
    }

    @Test("A failed check still exits 1 when standard output is lost too, and says both",
          .enabled(if: access("/dev/full", W_OK) == 0, "needs a writable /dev/full"))
    func failureKeepsItsCode() throws {
        // `frames` exits 1 when a frame is larger than the guard it is given.
        let run = try Self.run(["frames", "--guard", "4096", "--top", "3"], redirection: "> /dev/full")
        #expect(run.status == 1, "\(run.standardError)")
        #expect(run.standardError.contains("standard output: cannot write to it"), "\(run.standardError)")
    }

    @Test("Standard output a pipe whose reader went away (as in `| head`): exit 70 naming EPIPE, not a death by SIGPIPE",
          arguments: [["doctor"], ["frames", "--top", "3"], ["verify", "--json", "--million-stacks", "1000"]])
    func readerGone(_ arguments: [String]) throws {
        // A FIFO opened for reading and writing, then for writing, then closed for reading: a pipe with no reader.
        let fifo = "/tmp/fiberstacks-epipe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        #expect(mkfifo(fifo, 0o600) == 0, "mkfifo: errno \(errno)")
        defer { unlink(fifo) }
        let run = try Self.run(arguments, redirection: "4<>\(fifo) 5>\(fifo) 4<&- >&5 5>&-")
        #expect(run.signal == nil && run.status == 70, "\(arguments): \(String(describing: run.status)) \(String(describing: run.signal)) \(run.standardError)")
        #expect(run.standardError.contains("standard output: cannot write to it: Broken pipe (errno 32)"), "\(arguments): \(run.standardError)")
    }

    @Test("Standard output closed: exit 70, naming EBADF")
    func closedDescriptor() throws {
        let run = try Self.run(["doctor"], redirection: ">&-")
        #expect(run.status == 70, "\(run.standardError)")
        #expect(run.standardError.contains("standard output: cannot write to it: Bad file descriptor (errno 9)"), "\(run.standardError)")
    }

    @Test("With standard output closed, the bench report file holds the report and nothing else",
          .enabled(if: benchmarksBuilt, Comment(rawValue: benchmarksMissing)))
    func reportFileKeepsItsDescriptor() throws {
        let path = "/tmp/fiberstacks-report-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json"
        defer { unlink(path) }
        // An existing report file is opened when the run starts: with descriptor 1 free, it would get it.
        try Data("an older report\n".utf8).write(to: URL(fileURLWithPath: path))
        let run = try Self.run(["bench", "--quick", "--section", "frames", "--output", path], redirection: ">&-")
        #expect(run.status == 70, "\(run.standardError)")
        let report = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(report.first == UInt8(ascii: "{"), "the report starts with \(Array(report.prefix(8)))")
        let json = try JSONSerialization.jsonObject(with: report) as? [String: Any]
        #expect(json?["schema_version"] != nil)
    }
}
