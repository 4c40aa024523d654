import FiberScheduler
import Glibc

/// The scheduler on several nodes: one worker per node with memory, stacks bound to the worker's node and
/// grown while idle with populate; every grown stack must have all its pages on its worker's node.
package enum SchedulerNodeCheck {
    package static let name = "scheduler/worker-node-stacks"

    package static func run(_ context: MultiNodeChecks.Context, into report: inout NUMACheckReport) {
        let nodes = context.topology.nodes.filter { $0.hasMemory && !$0.cpus.isEmpty }
        guard nodes.count >= 2 else {
            report.skip(name, lacking: .multiNode, "needs two nodes with memory and CPUs")
            return
        }
        report.check(name) {
            var config = FiberConfig()
            config.usableSize = 64 << 10
            config.initialPoolSize = 1
            config.targetPoolSize = 4
            config.maxPoolSize = 4
            config.prefault = .populate
            config.bindStacksToNode = true
            config.topology = CPUTopology(nodes: nodes.map { CPUTopology.Node(id: $0.id, cpus: [$0.cpus[0]]) })
            let scheduler = try FiberScheduler(config: config)
            defer { scheduler.shutdown() }
            // Growth happens while idle: wait (bounded) for every pool to reach its target.
            for _ in 0..<500 where scheduler.stats.workers.contains(where: { $0.pool.size < 4 }) { usleep(10_000) }
            var counts: [String: Int] = [:]
            var misplaced = 0
            for fiber in scheduler.fibers where fiber.grownWhileIdle {
                let placement = try PlacementReport(range: fiber.stack.layout.usableRange, pageSize: fiber.stack.layout.pageSize)
                counts["node\(fiber.node)", default: 0] += placement.pagesPerNode[fiber.node] ?? 0
                misplaced += placement.present - (placement.pagesPerNode[fiber.node] ?? 0) + (placement.pages - placement.present)
            }
            let grown = scheduler.fibers.filter(\.grownWhileIdle).count
            counts["grown"] = grown
            counts["misplaced"] = misplaced
            return (
                grown == 3 * nodes.count && misplaced == 0,
                "\(grown) stacks grown while idle on \(nodes.count) workers; pages on their worker's node: \(counts)",
                counts)
        }
    }
}
