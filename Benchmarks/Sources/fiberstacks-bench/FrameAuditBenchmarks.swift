@_spi(Benchmarks) import OverflowDetection
import Glibc
import StackAllocators

/// `frames`: `audit_loaded` (ms), the wall-clock time `FrameAudit.auditLoadedObjects()` takes to read
/// the call frame information of this process and every library it loaded (`objects`, `functions`),
/// which decides whether the audit can run at startup. `extra.cpu_ms` is the median CPU time of the
/// auditing thread: on a shared machine the wall clock also counts the time other processes held the
/// CPU. Under `--quick` it is measured once (a debug build takes seconds).
enum FrameAuditBenchmarks {
    static func run(_ recorder: BenchRecorder) throws {
        let scale = recorder.scale.quick ? BenchScale(reps: 1, warmups: 0, quick: true) : recorder.scale
        var audit: FrameAudit?
        let columns = try measureFigures(scale) { () throws(StackError) -> [Double] in
            let (start, cpuStart) = (nanoseconds(), nanoseconds(CLOCK_THREAD_CPUTIME_ID))
            let result = try FrameAudit.auditLoadedObjects(logger: benchLogger)
            let (elapsed, cpu) = (nanoseconds() - start, nanoseconds(CLOCK_THREAD_CPUTIME_ID) - cpuStart)
            audit = result  // the previous audit is freed here, outside the timed part
            return [Double(elapsed) / 1e6, Double(cpu) / 1e6]
        }
        recorder.add(BenchResult(
            section: .frames, name: "audit_loaded",
            params: ["objects": audit?.objects.count ?? 0, "functions": audit?.functions.count ?? 0],
            unit: "ms", samples: columns[0], opsPerRep: 1, extra: ["cpu_ms": BenchResult.median(columns[1])]))
    }
}
