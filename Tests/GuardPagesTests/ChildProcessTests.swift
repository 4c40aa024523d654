import Glibc
@testable import GuardPages
import OverflowDetection
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

@Suite("Child processes: posix_spawn with a time limit")
struct ChildProcessTests {
    @Test("Exit status, standard output and standard error come back apart")
    func exitAndStreams() throws {
        let child = try ChildProcess.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], timeLimit: 30)
        #expect(child.status == 3 && child.signal == nil && !child.timedOut)
        #expect(child.standardOutput == "out\n")
        #expect(child.standardError == "err\n")
    }

    @Test("A child killed by a signal reports the signal")
    func signal() throws {
        let child = try ChildProcess.run("/bin/sh", ["-c", "kill -SEGV $$"], timeLimit: 30)
        #expect(child.signal == SIGSEGV && child.status == nil && child.ending == "signal \(SIGSEGV)")
    }

    @Test("A megabyte on each stream does not block either")
    func largeOutput() throws {
        let child = try ChildProcess.run(
            "/bin/sh", ["-c", "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2"], timeLimit: 30)
        #expect(child.status == 0)
        #expect(child.standardOutput.utf8.count == 1_000_000 && child.standardError.utf8.count == 1_000_000)
    }

    @Test("Past its time limit a child gets SIGTERM; one that ignores it, SIGKILL after the grace period")
    func timeLimit() throws {
        let start = monotonicSeconds()
        let polite = try ChildProcess.run("/bin/sh", ["-c", "sleep 30"], timeLimit: 0.3)
        #expect(polite.timedOut && polite.signal == SIGTERM)
        let stubborn = try ChildProcess.run("/bin/sh", ["-c", "trap '' TERM; while :; do sleep 1; done"], timeLimit: 0.3, grace: 0.3)
        #expect(stubborn.timedOut && stubborn.signal == SIGKILL)
        // The grandchild `sleep` keeps the pipes open; the wait still ends.
        #expect(monotonicSeconds() - start < 10)
    }

    @Test("The environment is ours plus the overrides")
    func environment() throws {
        let child = try ChildProcess.run("/bin/sh", ["-c", "echo $FS_CHILD_TEST:$PATH"], environment: ["FS_CHILD_TEST": "yes"], timeLimit: 30)
        #expect(child.standardOutput.hasPrefix("yes:") && child.standardOutput.count > "yes:\n".count)
    }

    @Test("A child starts in the working directory given; a missing one fails the spawn with ENOENT")
    func workingDirectory() throws {
        let child = try ChildProcess.run("/bin/pwd", ["-P"], workingDirectory: "/usr/lib", timeLimit: 30)
        #expect(child.status == 0 && child.standardOutput == "/usr/lib\n", "\(child.standardOutput)")
        #expect {
            _ = try ChildProcess.run("/bin/sh", ["-c", "pwd"], workingDirectory: "/no/such/directory", timeLimit: 5)
        } throws: { error in
            (error as? ChildProcess.Failure)?.errno == .noSuchFileOrDirectory
        }
    }

    @Test("A missing program is an error naming it and the errno")
    func missing() {
        #expect {
            _ = try ChildProcess.run("/no/such/program", [], timeLimit: 5)
        } throws: { error in
            guard let failure = error as? ChildProcess.Failure else { return false }
            return failure.errno == .noSuchFileOrDirectory && failure.description.contains("/no/such/program")
        }
    }
}

@Suite("The overflow diagnostic, as a parent reads it")
struct OverflowDiagnosticTests {
    @Test("The first fiber label and the distance are read; other text may come and go")
    func parse() {
        let line = #"fiberstacks: stack overflow in fiber "job-1@worker-2" (thread 7 "fs-worker-2"), running fiber "other": "#
            + "fault at 0x7f00 is 4096 bytes below the usable bottom of stack [0x8f00, 0x9f00); usable 4096 B, guard 65536 B\n"
        let diagnostic = OverflowDiagnostic(in: "noise\n" + line)
        #expect(diagnostic == OverflowDiagnostic(label: "job-1@worker-2", distance: 4096))
        let unlabelled = OverflowDiagnostic(in: "fiberstacks: stack overflow in an unlabelled fiber (thread 7 \"t\"): fault at 0x1 is 12 bytes below the usable bottom of stack")
        #expect(unlabelled == OverflowDiagnostic(label: nil, distance: 12))
        #expect(OverflowDiagnostic(in: "Segmentation fault\n") == nil)
    }
}
