import CStackSupport
import FiberScheduler
import Synchronization

/// `verify` for the fiber scheduler: real jobs with nested counter waits run on fibers whose stacks come
/// from each allocator; the results must be right, every job must have run on a stack of that allocator
/// with the guard it promised, and after shutdown the allocator must have no live stack left.
package enum SchedulerChecks {
    package static func run(into report: inout VerifyReport) {
        let modes = report.guardModes(skipping: "nested-jobs", "scheduler/mmap/lightweight")
        for mode in modes {
            let name = "scheduler/mmap/\(mode)"
            report.check("nested-jobs", name) {
                let allocator = try MmapStackAllocator(guardMode: mode)
                return try runJobs(on: allocator, expecting: allocator.guardMechanism) { allocator.stats.live }
            }
        }
    }

    /// Runs 20 parent jobs that each spawn 500 children and wait for them, from one root job, on every
    /// CPU; returns whether all went right and what happened. `live` reads the allocator's live stacks.
    package static func runJobs(
        on allocator: any StackAllocator, expecting mechanism: GuardMechanism, live: () -> Int
    ) throws -> (Bool, String) {
        var config = FiberConfig(allocator: allocator)
        config.usableSize = 128 << 10
        config.initialPoolSize = 4
        config.targetPoolSize = 8
        let scheduler = try FiberScheduler(config: config)
        let (parents, children) = (20, 500)
        let sum = Atomic<Int>(0)
        let wrongStack = Atomic<Int>(0)
        let root = scheduler.submit { () throws -> Int in
            let parentsDone = scheduler.submit(batch: (0..<parents).map { parent in
                { @Sendable () throws -> Void in
                    let childrenDone = scheduler.submit(batch: (0..<children).map { child in
                        { @Sendable in
                            let address = UInt(fs_stack_address())
                            let stack = FiberScheduler.currentFiber?.stack
                            if stack?.guardMechanism != mechanism || stack?.layout.usableRange.contains(address) != true {
                                wrongStack.add(1, ordering: .relaxed)
                            }
                            sum.add(parent * children + child, ordering: .relaxed)
                        }
                    })
                    try childrenDone.wait()
                }
            })
            try parentsDone.wait()
            return sum.load(ordering: .relaxed)
        }
        let result = Result { try root.wait() }
        scheduler.shutdown(.drain)
        let total = parents * children
        let stats = scheduler.stats
        let suspensions = stats.workers.map(\.suspensions).reduce(0, +)
        let liveAfter = live()
        let passed = (try? result.get()) == total * (total - 1) / 2 && wrongStack.load(ordering: .relaxed) == 0
            && liveAfter == 0 && stats.pool.created > 0
        return (
            passed,
            "\(stats.jobsRun) jobs on \(stats.workers.count) workers, \(suspensions) waits suspended a fiber, "
                + "\(stats.pool.created) fibers (\(mechanism) guards), \(wrongStack.load(ordering: .relaxed)) jobs off "
                + "their stack, \(liveAfter) stacks live after shutdown"
                + ((try? result.get()) == nil ? ", root job failed: \(result)" : "")
        )
    }
}
