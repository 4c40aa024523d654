import FiberScheduler
import Foundation
@_spi(Benchmarks) import GuardPages
import StackTestSupport
import Testing

/// A container's CPU limit (`docker --cpus`): the cgroup's quota, not the CPUs it may run on, says how
/// many workers can run at once.
@Suite("The CPU quota of a cgroup")
struct CPUQuotaTests {
    @Test("A scheduler with the default worker count runs one worker under a quota of one CPU, and says why in the log",
          needsCPUCgroup, .enabled(if: ((try? CPUTopology.current().cpus.count) ?? 0) >= 2, "needs 2 CPUs this process may run on"))
    func schedulerUnderQuota() async throws {
        let hierarchy = try #require(writableCgroup(controller: "cpu"))
        let (settings, file) = oneCPUQuota(in: hierarchy)
        let directory = try makeChildCgroup(of: hierarchy, "cpu-quota", settings: settings)
        // The child has exited by then, so the cgroup is empty and can go.
        defer { _ = rmdir(directory) }
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [directory = directory as String, file = file as String] in
            joinCgroup(directory)
            let quota = CPUQuota.current()
            ensure(quota?.workers == 1 && quota?.file == "\(directory)/\(file)", "\(String(describing: quota))")
            let (logger, log) = CapturingLogHandler.logger()
            var config = FiberConfig()
            config.usableSize = 64 << 10
            config.initialPoolSize = 1
            config.targetPoolSize = 1
            config.logger = logger
            let scheduler = try FiberScheduler(config: config)
            defer { scheduler.shutdown() }
            ensure(scheduler.workerCount == 1, "\(scheduler.workerCount) workers under a quota of one CPU")
            let said = log.all.filter { $0.level == .info && $0.message.contains("the CPU quota allows 1.0 CPUs") }
            ensure(said.count == 1 && said[0].message.contains("\(directory)/\(file)"), "\(log.all.map(\.message))")
            // An explicit count is kept.
            config.workerCount = 2
            let two = try FiberScheduler(config: config)
            defer { two.shutdown() }
            ensure(two.workerCount == 2, "\(two.workerCount) workers asked for 2")
        }
    }

    @Test("The binding quota is read from cgroup v2 and v1 trees up to the root: the fewest CPUs, rounded up to workers")
    func quotasReadFromTheTree() throws {
        let tree = FakeCgroupTree()
        let root = tree.root
        let write = tree.write
        func binding(_ memberships: String, _ mountinfo: String) -> CPUQuota? {
            CPUQuota.binding(in: CgroupHierarchy.hierarchies(controller: "cpu", memberships: memberships, mountinfo: mountinfo))
        }
        // v2: 1.5 CPUs one level up bind; the process's own "max" sets none, 4 CPUs at the root allow more.
        try write("v2/cpu.max", "400000 100000\n")
        try write("v2/kubepods/cpu.max", "75000 50000\n")
        try write("v2/kubepods/pod/cpu.max", "max 100000\n")
        let v2 = binding("0::/kubepods/pod\n", "35 24 0:30 / \(root)/v2 rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
        #expect(v2?.file == "\(root)/v2/kubepods/cpu.max" && v2?.workers == 2 && v2?.cpus == 1.5, "\(String(describing: v2))")
        // It lowers the default of one worker per CPU only where it allows fewer.
        #expect(v2?.workers(below: 64) == 2 && v2?.workers(below: 2) == nil, "\(String(describing: v2))")
        // None anywhere.
        let none = binding("0::/kubepods/pod\n", "35 24 0:30 /kubepods/pod \(root)/v2/kubepods/pod rw - cgroup2 cgroup2 rw\n")
        #expect(none == nil, "\(String(describing: none))")
        // v1's cpu controller, comma-joined with cpuacct; -1 sets none; a quarter of a CPU is still one worker.
        try write("v1/cpu.cfs_quota_us", "-1\n")
        try write("v1/cpu.cfs_period_us", "100000\n")
        try write("v1/job/cpu.cfs_quota_us", "25000\n")
        try write("v1/job/cpu.cfs_period_us", "100000\n")
        let v1 = binding(
            "5:cpu,cpuacct:/job\n4:memory:/job\n0::/\n",
            "33 25 0:29 / \(root)/v1 rw - cgroup cgroup rw,cpu,cpuacct\n")
        #expect(v1?.file == "\(root)/v1/job/cpu.cfs_quota_us" && v1?.workers == 1 && v1?.cpus == 0.25, "\(String(describing: v1))")
        // A memory-only v1 hierarchy has no CPU quota to give.
        #expect(binding("4:memory:/job\n", "33 25 0:29 / \(root)/v1 rw - cgroup cgroup rw,memory\n") == nil)
    }
}
