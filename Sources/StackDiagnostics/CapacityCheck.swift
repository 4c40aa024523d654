import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators

/// `verify` for capacity: a child allocates a million guarded 64 KiB slab stacks (fewer where this
/// machine's map count, address space, memory or memory cgroup limit cannot hold them: the row says so),
/// labels one chosen at random, writes into its guard, and must die by SIGSEGV with the diagnostic
/// naming that stack.
package enum CapacityCheck {
    package static let defaultStacks = 1_000_000
    package static let stackSize = 64 << 10
    package static let guardSize = 64 << 10
    /// The child's time limit: a million stacks take about ten seconds here.
    package static let timeLimit = 240.0

    package static func run(stacks requested: Int, into report: inout VerifyReport) {
        report.check("million-guarded", "slab/capacity", timeLimit: timeLimit + 10) {
            let lightweight = GuardInstaller.lightweightGuardsSupported
            let (count, limits) = try fitting(requested, lightweight: lightweight)
            let target = Int.random(in: 0..<count)
            let label = "verify-\(getpid())-stack-\(target)"
            let cgroup = MemoryCgroup.current()
            let killsBefore = cgroup?.oomKills
            var (passed, detail) = try SelfChild.expectGuardFault(
                ["--allocator", "slab", "--guard-mode", lightweight ? "lightweight" : "mprotect", "--stacks", "\(count)",
                 "--target", "\(target)"],
                label: label, offset: Int.random(in: 1...guardSize), guardSize: guardSize, timeLimit: timeLimit)
            if let cgroup, let killsBefore, let kills = cgroup.oomKills, kills > killsBefore {
                passed = false
                detail += "; the OOM killer ended the child (oom_kill \(killsBefore) -> \(kills) in \(cgroup.eventsFile)): "
                    + "raise the limit in \(cgroup.limitFile) (\(cgroup.limit) B, \(cgroup.usage) B in use)"
            }
            let scaled = count < requested ? " (scaled down from \(requested): \(limits))" : ""
            return (passed, "\(count) live stacks\(scaled), stack \(target) written: \(detail)")
        }
    }

    /// How many stacks this machine can hold, and what limited it.
    package static func fitting(_ requested: Int, lightweight: Bool) throws -> (Int, String) {
        var count = requested
        var limits: [String] = []
        if !lightweight {
            // mprotect guards: two map lines per stack, 4096 lines (at most a quarter of the limit) left over.
            let room = try MapCountBudget(reserve: 4096).guardsRemaining
            if room < count {
                count = room
                limits.append("vm.max_map_count allows \(room) (2 map lines per stack with mprotect guards; raise it with "
                    + "`sysctl -w vm.max_map_count=262144`)")
            }
        }
        // Page tables and guard markers: about 512 B resident per stack.
        let memory = try StackChecks.fittingMemory(count, residentEach: 512, committedEach: stackSize + guardSize)
        count = memory.count
        limits += memory.limits
        guard count >= 1000 else {
            throw CheckError(description: "this machine holds fewer than 1000 guarded stacks: \(limits.joined(separator: "; "))")
        }
        return (count, limits.joined(separator: "; "))
    }
}
