import Dispatch
import FiberScheduler
import StackAllocators
import Synchronization

/// `scheduler`, continued: single submissions and `parallelFor`, next to Dispatch.
///
/// - `fan_out_single` (µs): 10,000 empty jobs submitted one at a time from this thread under one
///   counter, until the counter is zero; `extra.dispatch_us` is the same with
///   `DispatchQueue.global().async(group:)` per job, measured in the same repetitions.
/// - `parallel_for` (µs): `parallelFor` over `iterations` (10,000 and 1,000,000) empty iterations from
///   this thread; `extra.concurrent_perform_us` is `DispatchQueue.concurrentPerform` over the same count,
///   measured in the same repetitions.
enum SchedulerScaleBenchmarks {
    static func run(_ recorder: BenchRecorder, on scheduler: FiberScheduler) throws {
        let scale = recorder.scale
        let singles = scale.ops(10_000, quick: 100)
        let fanOut = try measureFigures(scale) {
            let counter = JobCounter()
            let start = nanoseconds()
            for _ in 0..<singles { scheduler.submit(counter: counter) {} }
            try counter.wait()
            let ours = nanoseconds() - start
            let group = DispatchGroup()
            let dispatchStart = nanoseconds()
            for _ in 0..<singles { DispatchQueue.global().async(group: group) {} }
            group.wait()
            return [Double(ours) / 1000, Double(nanoseconds() - dispatchStart) / 1000]
        }
        recorder.add(BenchResult(
            section: .scheduler, name: "fan_out_single", params: ["workers": scheduler.workerCount, "jobs": singles],
            unit: "us", samples: fanOut[0], opsPerRep: 1, extra: ["dispatch_us": BenchResult.median(fanOut[1])]))
        for iterations in [scale.ops(10_000, quick: 100), scale.ops(1_000_000, quick: 1_000)] {
            let columns = try measureFigures(scale) {
                let start = nanoseconds()
                try scheduler.parallelFor(0..<iterations) { _ in }
                let ours = nanoseconds() - start
                let performStart = nanoseconds()
                DispatchQueue.concurrentPerform(iterations: iterations) { _ in }
                return [Double(ours) / 1000, Double(nanoseconds() - performStart) / 1000]
            }
            recorder.add(BenchResult(
                section: .scheduler, name: "parallel_for",
                params: ["workers": scheduler.workerCount, "iterations": iterations], unit: "us", samples: columns[0],
                opsPerRep: 1, extra: ["concurrent_perform_us": BenchResult.median(columns[1])]))
        }
    }
}
