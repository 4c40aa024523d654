import Foundation
import GuardPages
@_spi(Benchmarks) import OverflowDetection
import StackTestSupport
import Synchronization
import Testing

/// What the reader saw while the writers churned.
private final class StressTally: Sendable {
    let writersRunning = Atomic<Int>(0)
    let lookups = Atomic<Int>(0)
    let hits = Atomic<Int>(0)
    let wrongEntries = Atomic<Int>(0)
    let stableMisses = Atomic<Int>(0)
}

/// Runs each body on its own thread and waits for all of them.
private func runOnThreads(_ bodies: [@Sendable () -> Void]) {
    let group = DispatchGroup()
    for body in bodies {
        group.enter()
        Thread.detachNewThread {
            body()
            group.leave()
        }
    }
    group.wait()
}

// Run under ThreadSanitizer by scripts/test-tsan.
@Suite("GuardRegistry stress")
struct GuardRegistryStressTests {
    static let writers = 4
    static let stacksPerWriter = 256
    /// With the writers' stacks, more than the first segment's 4,096 slots: lookups cross into the next.
    static let stableStacks = 3_500
    static let operationsPerWriter = 20_000
    /// Lookups the reader must complete while writers churn, within `patience` seconds: the reader's
    /// liveness, whatever else the machine (or the rest of the test suite) is running.
    static let requiredLookups = 200
    static let patience = 30.0
    static let stride = 32 << 10

    /// Stack `index` of the region: guards of 4 to 16 KiB, so lookups cross several candidate pages.
    static func layout(_ index: Int, in region: AddressReservation) throws -> StackLayout {
        try region.layout(at: index * stride, usable: 8 << 10, guard: (1 + index % 4) << 12)
    }

    static func label(_ index: Int) -> String { "stack-\(index)" }

    @Test("Concurrent register/unregister from 4 threads while a reader looks addresses up")
    func concurrentWritersAndReader() throws {
        let total = Self.writers * Self.stacksPerWriter + Self.stableStacks
        let region = try AddressReservation(size: total * Self.stride)
        let layouts = try (0..<total).map { try Self.layout($0, in: region) }
        let stable = layouts.suffix(Self.stableStacks)
        for (index, layout) in zip(stable.indices, stable) { try GuardRegistry.register(layout, label: Self.label(index)) }
        defer { for layout in stable { GuardRegistry.unregister(layout) } }
        let tally = StressTally()
        tally.writersRunning.store(Self.writers, ordering: .relaxed)

        let writers: [@Sendable () -> Void] = (0..<Self.writers).map { writer in
            {
                var random = XorShift(state: UInt64(writer + 1) &* 0x9E37_79B9_7F4A_7C15)
                let mine = (writer * Self.stacksPerWriter)..<((writer + 1) * Self.stacksPerWriter)
                var registered = [Bool](repeating: false, count: Self.stacksPerWriter)
                let deadline = Date().addingTimeInterval(Self.patience)
                var operations = 0
                // Churn until this writer's share is done and the reader has had its chance to run.
                while operations < Self.operationsPerWriter
                    || (tally.lookups.load(ordering: .relaxed) < Self.requiredLookups && Date() < deadline)
                {
                    operations += 1
                    let slot = Int.random(in: 0..<Self.stacksPerWriter, using: &random)
                    let layout = layouts[mine.lowerBound + slot]
                    if registered[slot] {
                        precondition(GuardRegistry.unregister(layout))
                    } else {
                        try! GuardRegistry.register(layout, label: Self.label(mine.lowerBound + slot))
                    }
                    registered[slot].toggle()
                }
                for slot in registered.indices where registered[slot] {
                    precondition(GuardRegistry.unregister(layouts[mine.lowerBound + slot]))
                }
                tally.writersRunning.subtract(1, ordering: .releasing)
            }
        }
        let reader: @Sendable () -> Void = {
            var random = XorShift(state: 0xDEAD_BEEF)
            while tally.writersRunning.load(ordering: .acquiring) > 0 {
                // Any address in the region: an entry, if found, must contain it and be the stack there.
                let address = region.base + UInt.random(in: 0..<UInt(region.size), using: &random)
                tally.lookups.add(1, ordering: .relaxed)
                if let entry = GuardRegistry.entry(guarding: address) {
                    tally.hits.add(1, ordering: .relaxed)
                    let index = Int(address - region.base) / Self.stride
                    if !entry.guardRange.contains(address) || entry.usableRange != layouts[index].usableRange
                        || entry.label != Self.label(index)
                    {
                        tally.wrongEntries.add(1, ordering: .relaxed)
                    }
                }
                // A stable stack's guard must always be found, whatever the writers are moving around it.
                let stableIndex = layouts.count - Self.stableStacks + Int.random(in: 0..<Self.stableStacks, using: &random)
                let guardRange = layouts[stableIndex].guardRange
                let inGuard = UInt.random(in: guardRange, using: &random)
                if GuardRegistry.entry(guarding: inGuard)?.label != Self.label(stableIndex) {
                    tally.stableMisses.add(1, ordering: .relaxed)
                }
            }
        }
        runOnThreads(writers + [reader])

        #expect(tally.lookups.load(ordering: .relaxed) >= Self.requiredLookups, "the reader starved while writers churned")
        #expect(tally.wrongEntries.load(ordering: .relaxed) == 0)
        #expect(tally.stableMisses.load(ordering: .relaxed) == 0)
        for layout in layouts.prefix(Self.writers * Self.stacksPerWriter) {
            #expect(GuardRegistry.entry(forStackAt: layout.usableBottom) == nil)
        }
    }
}
