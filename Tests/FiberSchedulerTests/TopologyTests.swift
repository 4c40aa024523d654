import FiberScheduler
@_spi(Benchmarks) import GuardPages
import StackTestSupport
import Testing

@Suite("CPU topology and worker placement")
struct TopologyTests {
    @Test("This machine's topology has a node with CPUs, and default workers are one per CPU (up to the CPU quota), pinned")
    func currentMachine() throws {
        let topology = try CPUTopology.current()
        #expect(!topology.cpus.isEmpty)
        for cpu in topology.cpus { #expect(topology.node(ofCPU: cpu) != nil) }
        var config = FiberConfig()
        config.usableSize = 64 << 10
        config.initialPoolSize = 1
        config.targetPoolSize = 1
        let scheduler = try FiberScheduler(config: config)
        scheduler.shutdown()
        let workers = CPUQuota.current()?.workers(below: topology.cpus.count) ?? topology.cpus.count
        #expect(scheduler.workerCount == workers)
        #expect(scheduler.stats.workers.map(\.placement.cpu).sorted() == topology.placements(workers: workers).map(\.cpu).sorted())
        #expect(scheduler.stats.workers.allSatisfy { $0.pinned })
    }

    @Test("Where a seccomp profile refuses sched_getaffinity (EPERM), every online CPU counts, and a scheduler starts")
    func affinityRefused() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let online = parseCPUList(try SystemFile.read("/sys/devices/system/cpu/online"))
            FailureInjection.fail(.cpuAffinity, with: .notPermitted, times: 1_000)
            let topology = try CPUTopology.current()
            ensure(topology.cpus.sorted() == online, "\(topology.cpus) against online \(online)")
            var config = FiberConfig()
            config.usableSize = 64 << 10
            config.initialPoolSize = 1
            let scheduler = try FiberScheduler(config: config)
            let answer = try scheduler.submit { 6 * 7 }.wait()
            ensure(answer == 42, "the job returned \(answer)")
            scheduler.shutdown()
        }
    }

    @Test("Workers spread over nodes in proportion and are listed grouped by node")
    func placements() {
        let topology = CPUTopology(nodes: [
            .init(id: 1, cpus: [4, 5, 6, 7]), .init(id: 0, cpus: [0, 1, 2, 3]), .init(id: 2, cpus: []),
        ])
        #expect(topology.nodes.map(\.id) == [0, 1])
        let four = topology.placements(workers: 4)
        #expect(four.map(\.node) == [0, 0, 1, 1])
        #expect(four.map(\.cpu) == [0, 1, 4, 5])
        let ten = topology.placements(workers: 10)
        #expect(ten.filter { $0.node == 0 }.count == 5)
        #expect(Set(ten.map(\.cpu)) == Set(topology.cpus))
        #expect(topology.placements(workers: 0).isEmpty)
        #expect(CPUTopology(nodes: []).placements(workers: 3).isEmpty)
    }
}
