import StackTestSupport
import Testing

/// The limit under test: RLIMIT_AS of 256 MiB (`ulimit -v 262144`), which a PROT_NONE reservation counts
/// against like any mapping. This test process is far larger, so a child runs under it.
@Suite("A small address space")
struct AddressSpaceLimitTests {
    @Test("Under ulimit -v 262144 a 512 KiB guarded stack and a two-worker scheduler with 16 fibers per worker work")
    func smallAddressSpace() throws {
        let run = try spawnAndWait(
            "/bin/sh", ["-c", "ulimit -v 262144 && exec \"$0\" address-space-child", fiberstacksBinary], seconds: 60)
        #expect(!run.timedOut, "the child ran past 60 s: \(run.output)")
        #expect(run.exitStatus == 0, "exit \(String(describing: run.exitStatus)), signal \(String(describing: run.signal)): \(run.output)")
        #expect(run.output.contains("32 jobs on 2 workers"), "\(run.output)")
    }

    @Test("When worker thread stacks do not fit under ulimit -v, the scheduler's error names RLIMIT_AS")
    func threadStacksOverTheLimit() throws {
        // Every new thread gets RLIMIT_STACK bytes of stack: 256 MiB cannot fit under a 256 MiB RLIMIT_AS.
        let run = try spawnAndWait(
            "/bin/sh", ["-c", "ulimit -v 262144 && ulimit -s 262144 && exec \"$0\" address-space-child", fiberstacksBinary],
            seconds: 60)
        #expect(!run.timedOut, "the child ran past 60 s: \(run.output)")
        #expect(run.exitStatus == 70, "exit \(String(describing: run.exitStatus)), signal \(String(describing: run.signal)): \(run.output)")
        #expect(run.output.contains("RLIMIT_AS") && run.output.contains("ulimit -v"), "\(run.output)")
    }
}
