import StackAllocators

/// `frames`: `audit_loaded` (ms), the time `FrameAudit.auditLoadedObjects()` takes to read the call
/// frame information of this process and every library it loaded (`objects`, `functions`), which
/// decides whether the audit can run at startup. Under `--quick` it is measured once (a debug build
/// takes seconds).
enum FrameAuditBenchmarks {
    static func run(_ recorder: BenchRecorder) throws {
        let scale = recorder.scale.quick ? BenchScale(reps: 1, warmups: 0, quick: true) : recorder.scale
        var audit: FrameAudit?
        let samples = try measure(scale, ops: 1) { () throws(StackError) -> UInt64 in
            let start = nanoseconds()
            let result = try FrameAudit.auditLoadedObjects(logger: benchLogger)
            let elapsed = nanoseconds() - start
            audit = result  // the previous audit is freed here, outside the timed part
            return elapsed
        }
        recorder.add(BenchResult(
            section: .frames, name: "audit_loaded",
            params: ["objects": audit?.objects.count ?? 0, "functions": audit?.functions.count ?? 0],
            unit: "ms", samples: samples.map { $0 / 1e6 }, opsPerRep: 1))
    }
}
