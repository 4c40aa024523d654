import Foundation
import GuardPages
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// The limits under test: RLIMIT_AS (`ulimit -v`), which a PROT_NONE reservation counts against like any
/// mapping, and RLIMIT_DATA (`ulimit -d`), which counts private writable mappings. This test process is
/// far larger, so a child runs under them.
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

    @Test(
        "Under a limit of 1000000 KiB, less than a slab region of 256 KiB stacks, verify passes: the slabs map smaller regions and the checks scale to the limit",
        arguments: ["ulimit -v 1000000", "ulimit -d 1000000"])
    func verifyUnderLimit(_ limit: String) throws {
        let run = try ChildProcess.run(
            "/bin/sh", ["-c", "\(limit) && exec \"$0\" verify --json --million-stacks 100000", fiberstacksBinary],
            timeLimit: 600)
        let output = run.standardOutput + run.standardError
        #expect(!run.timedOut && run.status == 0, "exit \(String(describing: run.status)), signal \(String(describing: run.signal)): \(output)")
        let json = try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any]
        let failed = (json?["checks"] as? [[String: Any]] ?? []).filter { $0["status"] as? String == "fail" }
        #expect(failed.isEmpty, "\(failed)")
    }

    @Test("Under ulimit -v 300000, too small for 1000 guarded stacks, verify fails the capacity check, and every failure names the limit and how to raise it")
    func verifyUnderTooSmallLimit() throws {
        let run = try ChildProcess.run(
            "/bin/sh", ["-c", "ulimit -v 300000 && exec \"$0\" verify --json", fiberstacksBinary], timeLimit: 600)
        let output = run.standardOutput + run.standardError
        #expect(!run.timedOut && run.status == 1, "exit \(String(describing: run.status)), signal \(String(describing: run.signal)): \(output)")
        let json = try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any]
        let failed = (json?["checks"] as? [[String: Any]] ?? []).filter { $0["status"] as? String == "fail" }
        #expect(failed.contains { $0["allocator"] as? String == "slab/capacity" }, "\(failed)")
        for check in failed {
            let detail = check["detail"] as? String ?? ""
            #expect(detail.contains("ulimit -v allows") && detail.contains("raise it with `ulimit -v unlimited`"), "\(check)")
        }
    }

    @Test("When worker thread stacks do not fit under ulimit -v or ulimit -d, the scheduler's error names that limit",
          arguments: [("ulimit -v", "RLIMIT_AS"), ("ulimit -d", "RLIMIT_DATA")])
    func threadStacksOverTheLimit(_ command: String, _ resource: String) throws {
        // Every new thread gets RLIMIT_STACK bytes of stack: 256 MiB cannot fit under a limit of 256 MiB.
        let run = try ChildProcess.run(
            "/bin/sh", ["-c", "\(command) 262144 && ulimit -s 262144 && exec \"$0\" address-space-child", fiberstacksBinary],
            timeLimit: 60)
        let output = run.standardOutput + run.standardError
        #expect(!run.timedOut, "the child ran past 60 s: \(output)")
        #expect(run.status == 70, "exit \(String(describing: run.status)), signal \(String(describing: run.signal)): \(output)")
        #expect(output.contains(resource) && output.contains("raise `\(command)`"), "\(output)")
    }
}

/// How `verify` sizes its checks under a mapping limit.
struct AddressSpaceRoomTests {
    @Test("Under ulimit -v a check's stacks leave room for a new malloc arena (128 MiB mapped while glibc aligns it); under ulimit -d they need not",
          arguments: [150, 300, 1000])
    func checksLeaveRoomForAnArena(_ roomMiB: Int) throws {
        let stackBytes = 128 << 10
        let inUse = 150 << 20
        let addressSpace = MappingLimit(kind: .addressSpace, limit: inUse + roomMiB << 20, inUse: inUse)
        let fitted = try StackChecks.fittingMemory(10_000, residentEach: 4096, committedEach: stackBytes, mappingLimits: [addressSpace])
        #expect(addressSpace.room - fitted.count * stackBytes >= 128 << 20, "\(fitted)")
        #expect(fitted.count > 0 || roomMiB <= 128, "\(fitted)")
        #expect(fitted.limits.contains { $0.contains("ulimit -v allows \(fitted.count)") && $0.contains("malloc arena") }, "\(fitted)")
        let data = MappingLimit(kind: .data, limit: inUse + roomMiB << 20, inUse: inUse)
        let fittedData = try StackChecks.fittingMemory(10_000, residentEach: 4096, committedEach: stackBytes, mappingLimits: [data])
        #expect(fittedData.count == (roomMiB << 20) / 2 / stackBytes, "\(fittedData)")
    }
}
