import Glibc
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// Inputs that once crashed or hung the tool: each must be a usage error (exit 64) that names the flag
/// and what it accepts, before any benchmark runs.
@Suite("fiberstacks bench: every number and path from a user is checked first", .enabled(if: benchmarksBuilt, Comment(rawValue: benchmarksMissing)))
struct InputBoundsTests {
    @Test(
        "An out-of-range number is a usage error naming the flag and its range",
        arguments: [
            (["--section", "capacity", "--quick", "--capacity-seconds", "inf"], "--capacity-seconds"),
            (["--section", "capacity", "--quick", "--capacity-seconds", "1e300"], "--capacity-seconds"),
            (["--section", "capacity", "--quick", "--capacity-seconds", "2e10"], "--capacity-seconds"),
            (["--section", "capacity", "--quick", "--capacity-seconds", "nan"], "--capacity-seconds"),
            (["--section", "capacity", "--capacity-limit", "4611686018427387904"], "--capacity-limit"),
            (["--section", "capacity", "--capacity-limit", "100000000000"], "--capacity-limit"),
            (["--reps", "4611686018427387904", "--section", "context_switch"], "--reps"),
            (["--reps", "99999999999999999999999", "--section", "context_switch"], "--reps"),
            (["--reps", "-1"], "--reps"),
            (["--section", "capacity", "--quick", "--capacity-seconds", "0x10"], "--capacity-seconds"),
            (["--section", "capacity", "--quick", "--capacity-seconds", "0x1p3"], "--capacity-seconds"),
        ])
    func outOfRange(_ arguments: [String], flag: String) throws {
        let run = try runFiberstacks(["bench"] + arguments)
        #expect(run.signal == nil && run.status == 64, "\(run.status): \(run.standardError)")
        #expect(run.standardError.contains("'\(flag) <"), "\(run.standardError)")
        #expect(run.standardError.contains("expected a number from "), "\(run.standardError)")
        #expect(!run.standardError.contains("bench: "), "a benchmark ran: \(run.standardError)")
    }

    @Test("--output and --svg naming the same file (or a link to it) is a usage error before any benchmark runs")
    func outputAndPictureInOneFile() throws {
        let path = "/tmp/fiberstacks-report-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let link = path + ".svg"
        defer { unlink(path); unlink(link) }
        let descriptor = creat(path, 0o600)
        #expect(descriptor >= 0 && close(descriptor) == 0 && symlink(path, link) == 0, "errno \(errno)")
        for svg in [path, link] {
            let run = try runFiberstacks(["bench", "--quick", "--section", "frames", "--output", path, "--svg", svg])
            #expect(run.status == 64, "\(run.standardError)")
            #expect(run.standardError.contains("--output and --svg name the same file"), "\(run.standardError)")
            #expect(!run.standardError.contains("bench: "), "a benchmark ran: \(run.standardError)")
        }
    }

    @Test("An --output in a missing directory is a usage error before any benchmark runs")
    func outputDirectoryMissing() throws {
        let run = try runFiberstacks(["bench", "--quick", "--section", "capacity", "--output", "/nonexistent/x.json"])
        #expect(run.status == 64, "\(run.standardError)")
        #expect(run.standardError.contains("/nonexistent") && run.standardError.contains("(errno 2)"), "\(run.standardError)")
        #expect(!run.standardError.contains("bench: "), "a benchmark ran: \(run.standardError)")
    }

    @Test(
        "A file that takes no writes (/dev/full) is a usage error naming the errno, before any benchmark runs",
        .enabled(if: access("/dev/full", W_OK) == 0, "needs a writable /dev/full"))
    func outputRefusesWrites() throws {
        let run = try runFiberstacks(["bench", "--quick", "--section", "capacity", "--output", "/dev/full"])
        #expect(run.status == 64, "\(run.standardError)")
        #expect(run.standardError.contains("--output /dev/full: cannot write to it: No space left on device (errno 28)"), "\(run.standardError)")
        #expect(!run.standardError.contains("bench: "), "a benchmark ran: \(run.standardError)")
    }

    @Test(
        "A report whose write fails at the end names the path and the errno, exits 70, and the table is still printed",
        .disabled(
            if: Sanitizer.loaded != nil,
            "the file size limit this test sets breaks sanitizer runtimes: ThreadSanitizer's maps a file of its own (/tmp/tsan.rodata.<pid>) and faults on it (SIGBUS)"))
    func outputWriteFails() throws {
        let path = "/tmp/fiberstacks-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json"
        defer { unlink(path) }
        // A file size limit of 1 KiB, its signal ignored (inherited across exec): the report's write
        // fails with EFBIG once the first KiB is written, after every check has passed.
        let run = try ChildProcess.run(
            "/bin/sh",
            ["-c", "trap '' XFSZ; ulimit -f 2 && exec \"$0\" bench --quick --section capacity --output \"$1\"", fiberstacksBinary, path],
            timeLimit: 300)
        #expect(run.status == 70, "\(run.standardError)")
        #expect(run.standardError.contains("cannot write \(path): File too large (errno 27)"), "\(run.standardError)")
        #expect(!run.standardError.contains("NSCocoaErrorDomain"))
        #expect(run.standardOutput.contains("capacity/slab_guarded_stacks"), "\(run.standardOutput)")
    }
}
