@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// The limit under test: RLIMIT_AS of 256 MiB (`ulimit -v 262144`), which a PROT_NONE reservation counts
/// against like any mapping. This test process is far larger, so a child runs under it.
@Suite("A small address space", needsNoSanitizerUnderAddressLimit)
struct AddressSpaceLimitTests {
    @Test("Under ulimit -v 262144 a 512 KiB guarded stack and a two-worker scheduler with 16 fibers per worker work")
    func smallAddressSpace() throws {
        let run = try ChildProcess.run(
            "/bin/sh", ["-c", "ulimit -v 262144 && exec \"$0\" address-space-child", fiberstacksBinary], timeLimit: 60)
        #expect(!run.timedOut, "the child ran past 60 s: \((run.standardOutput + run.standardError))")
        #expect(run.status == 0, "exit \(String(describing: run.status)), signal \(String(describing: run.signal)): \((run.standardOutput + run.standardError))")
        #expect((run.standardOutput + run.standardError).contains("32 jobs on 2 workers"), "\((run.standardOutput + run.standardError))")
    }

    @Test("When worker thread stacks do not fit under ulimit -v, the scheduler's error names RLIMIT_AS")
    func threadStacksOverTheLimit() throws {
        // Every new thread gets RLIMIT_STACK bytes of stack: 256 MiB cannot fit under a 256 MiB RLIMIT_AS.
        let run = try ChildProcess.run(
            "/bin/sh", ["-c", "ulimit -v 262144 && ulimit -s 262144 && exec \"$0\" address-space-child", fiberstacksBinary],
            timeLimit: 60)
        #expect(!run.timedOut, "the child ran past 60 s: \((run.standardOutput + run.standardError))")
        #expect(run.status == 70, "exit \(String(describing: run.status)), signal \(String(describing: run.signal)): \((run.standardOutput + run.standardError))")
        #expect((run.standardOutput + run.standardError).contains("RLIMIT_AS") && (run.standardOutput + run.standardError).contains("ulimit -v"), "\((run.standardOutput + run.standardError))")
    }
}
