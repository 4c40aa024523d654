import MetricsTestKit
import StackAllocators
import Testing

@Suite("StackAllocatorMetrics")
struct StackAllocatorMetricsTests {
    @Test("Gauges follow the stats; counters count what changed since the last record")
    func exportsStats() throws {
        let metrics = TestMetrics()
        let slab = try SlabStackAllocator()
        let exporter = StackAllocatorMetrics(slab, name: "slab-test", measuringResidency: true, factory: metrics)
        let dimensions = [("allocator", "slab-test")]

        let first = try slab.allocate(StackRequest(usableSize: 64 << 10))
        let second = try slab.allocate(StackRequest(usableSize: 64 << 10))
        (first.top - 1).storeBytes(of: 1, as: UInt8.self)
        try exporter.record()
        #expect(try metrics.expectGauge("fiberstacks_stacks_live", dimensions).lastValue == 2)
        #expect(try metrics.expectGauge("fiberstacks_stacks_live_by_guard", dimensions + [("guard", slab.guardMechanism.rawValue)]).lastValue == 2)
        #expect(try metrics.expectGauge("fiberstacks_bytes_reserved", dimensions).lastValue == Double(slab.regionSize))
        #expect(try metrics.expectGauge("fiberstacks_bytes_resident", dimensions).lastValue == Double(systemPageSize))
        #expect(try metrics.expectCounter("fiberstacks_stack_allocations", dimensions).totalValue == 2)

        first.release()
        second.release()
        _ = try slab.allocate(StackRequest(usableSize: 64 << 10))
        try exporter.record()
        try exporter.record()
        #expect(try metrics.expectCounter("fiberstacks_stack_allocations", dimensions).totalValue == 3)
        #expect(try metrics.expectCounter("fiberstacks_stack_releases", dimensions).totalValue == 3)
        #expect(try metrics.expectGauge("fiberstacks_stacks_live", dimensions).lastValue == 0)
        #expect(try metrics.expectGauge("fiberstacks_stacks_cached", dimensions).lastValue == 2)
        #expect(try metrics.expectGauge("fiberstacks_bytes_resident", dimensions).lastValue == 0)
    }

    @Test("A pool's trims are exported, and no residency gauge exists unless asked for")
    func poolTrims() throws {
        let metrics = TestMetrics()
        let pool = try PooledStackAllocator(
            wrapping: try MmapStackAllocator(), .init(stack: StackRequest(usableSize: 64 << 10), idlePeriod: .zero))
        let exporter = StackAllocatorMetrics(pool, name: "pool-test", factory: metrics)
        try withStacks(pool, count: 3) {}
        pool.trim()
        try exporter.record()
        let dimensions = [("allocator", "pool-test")]
        #expect(try metrics.expectCounter("fiberstacks_trims", dimensions).totalValue == 3)
        #expect(try metrics.expectGauge("fiberstacks_stacks_cached", dimensions).lastValue == 0)
        #expect(metrics.recorders.allSatisfy { $0.label != "fiberstacks_bytes_resident" })
    }
}
