import Glibc
import GuardPages
@_spi(Benchmarks) import OverflowDetection
import StackTestSupport
import Testing

/// Address space reserved PROT_NONE, carved into fake stacks for the registry (which never touches
/// the memory it describes): no real allocator can hand out these addresses while the test runs.
final class AddressReservation: Sendable {
    let base: UInt
    let size: Int

    init(size: Int) throws {
        let address = mmap(nil, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        try #require(address != MAP_FAILED)
        base = UInt(bitPattern: address)
        self.size = size
    }

    /// A stack whose reservation starts `offset` bytes into the region.
    func layout(at offset: Int, usable: Int, guard guardSize: Int) throws -> StackLayout {
        precondition(offset + guardSize + usable <= size)
        return try StackLayout(base: base + UInt(offset), sizes: StackSizes(usableSize: usable, guardSize: guardSize))
    }

    deinit { precondition(munmap(UnsafeMutableRawPointer(bitPattern: base), size) == 0) }
}

@Suite("GuardRegistry")
struct GuardRegistryTests {
    @Test("A registered guard is found from each of its addresses, and from no other")
    func findsGuard() throws {
        let region = try AddressReservation(size: 1 << 20)
        let layout = try region.layout(at: 64 << 10, usable: 64 << 10, guard: 16 << 10)
        try GuardRegistry.register(layout, label: "job-1@worker-0")
        defer { GuardRegistry.unregister(layout) }
        var addresses = Array(stride(from: layout.guardRange.lowerBound, to: layout.usableBottom, by: 997))
        addresses.append(layout.usableBottom - 1)
        for address in addresses {
            let entry = GuardRegistry.entry(guarding: address)
            #expect(entry?.guardRange == layout.guardRange, "0x\(String(address, radix: 16))")
            #expect(entry?.usableRange == layout.usableRange)
            #expect(entry?.label == "job-1@worker-0")
        }
        for address in [layout.base - 1, layout.usableBottom, layout.top - 1, layout.top, 0, 8, UInt.max] {
            #expect(GuardRegistry.entry(guarding: address) == nil, "0x\(String(address, radix: 16))")
        }
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom)?.guardRange == layout.guardRange)
        #expect(GuardRegistry.unregister(layout))
        #expect(GuardRegistry.entry(guarding: layout.usableBottom - 1) == nil)
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom) == nil)
    }

    @Test("A prefetch is a hint: it registers, changes and removes nothing, whatever the addresses")
    func prefetchChangesNothing() throws {
        let region = try AddressReservation(size: 1 << 20)
        let layout = try region.layout(at: 64 << 10, usable: 64 << 10, guard: 16 << 10)
        try GuardRegistry.register(layout, label: "kept")
        defer { GuardRegistry.unregister(layout) }
        let elsewhere = layout.top + (64 << 10)
        GuardRegistry.prefetch(usableBottoms: [layout.usableBottom, elsewhere, 0, 1, UInt.max])
        GuardRegistry.prefetch(usableBottoms: [])
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom)?.label == "kept")
        #expect(GuardRegistry.entry(guarding: layout.usableBottom - 1)?.usableRange == layout.usableRange)
        #expect(GuardRegistry.entry(forStackAt: elsewhere) == nil)
    }

    @Test("Adjacent stacks: a fault in each guard names that stack")
    func adjacentStacks() throws {
        let region = try AddressReservation(size: 1 << 20)
        let layouts = try (0..<8).map { try region.layout(at: $0 * (20 << 10), usable: 16 << 10, guard: 4 << 10) }
        for (index, layout) in layouts.enumerated() { try GuardRegistry.register(layout, label: "stack-\(index)") }
        defer { for layout in layouts { GuardRegistry.unregister(layout) } }
        for (index, layout) in layouts.enumerated() {
            #expect(GuardRegistry.entry(guarding: layout.base)?.label == "stack-\(index)")
            #expect(GuardRegistry.entry(guarding: layout.usableBottom - 1)?.label == "stack-\(index)")
            #expect(GuardRegistry.entry(guarding: layout.usableBottom) == nil)
        }
    }

    @Test("Labels are replaced, cut at 63 bytes on a character boundary, and made printable")
    func labels() throws {
        let region = try AddressReservation(size: 1 << 20)
        let layout = try region.layout(at: 0, usable: 16 << 10, guard: 4 << 10)
        try GuardRegistry.register(layout)
        defer { GuardRegistry.unregister(layout) }
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom)?.label == "")
        #expect(GuardRegistry.setLabel("job-17@worker-1", forStackAt: layout.usableBottom))
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom)?.label == "job-17@worker-1")
        let long = String(repeating: "a", count: 62) + "é" + "tail"  // "é" is 2 bytes at offsets 62-63
        #expect(GuardRegistry.setLabel(long, forStackAt: layout.usableBottom))
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom)?.label == String(repeating: "a", count: 62))
        #expect(GuardRegistry.setLabel("a\"b\nc\u{7F}", forStackAt: layout.usableBottom))
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom)?.label == "a?b?c?")
        #expect(GuardRegistry.setLabel("before\0after", forStackAt: layout.usableBottom))
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom)?.label == "before")
        #expect(!GuardRegistry.setLabel("nobody", forStackAt: layout.top))
    }

    @Test("Registering a usable bottom again replaces the stack there; only the newest registration ends it")
    func replacement() throws {
        let region = try AddressReservation(size: 1 << 20)
        let older = try region.layout(at: 0, usable: 16 << 10, guard: 4 << 10)
        let newer = try region.layout(at: 0, usable: 32 << 10, guard: 4 << 10)
        let first = try GuardRegistry.register(older, label: "older")
        let second = try GuardRegistry.register(newer, label: "newer")
        defer { GuardRegistry.unregister(newer) }
        #expect(second > first)
        #expect(GuardRegistry.entry(forStackAt: newer.usableBottom)?.label == "newer")
        #expect(GuardRegistry.entry(forStackAt: newer.usableBottom)?.usableRange == newer.usableRange)
        #expect(!GuardRegistry.end(first, at: older.usableBottom))  // replaced: changes nothing
        #expect(GuardRegistry.entry(forStackAt: newer.usableBottom) != nil)
        #expect(GuardRegistry.end(second, at: newer.usableBottom))
        #expect(GuardRegistry.entry(forStackAt: newer.usableBottom) == nil)
        #expect(!GuardRegistry.end(second, at: newer.usableBottom))
        #expect(!GuardRegistry.unregister(newer))
    }

    @Test("An empty guard keeps a label for the stack and never matches a fault")
    func labelOnly() throws {
        let region = try AddressReservation(size: 1 << 20)
        let layout = try region.layout(at: 0, usable: 16 << 10, guard: 0)
        try GuardRegistry.register(layout, label: "canary-stack")
        defer { GuardRegistry.unregister(layout) }
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom)?.label == "canary-stack")
        #expect(GuardRegistry.entry(forStackAt: layout.usableBottom)?.guardRange.isEmpty == true)
        #expect(GuardRegistry.entry(guarding: layout.usableBottom - 1) == nil)
        #expect(GuardRegistry.entry(guarding: layout.usableBottom) == nil)
    }

    @Test("100,000 stacks, every 7th labelled: the index grows, every guard and label is found, labels go with their stacks")
    func growth() async {
        // In a child process: the count is process-wide, and other tests register stacks in parallel.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let stacks = 100_000
            let region = try AddressReservation(size: stacks * (8 << 10))
            let baseline = GuardRegistry.count
            let layouts = try (0..<stacks).map { try region.layout(at: $0 * (8 << 10), usable: 4 << 10, guard: 4 << 10) }
            func label(_ index: Int) -> String { index % 7 == 0 ? "stack \(index)" : "" }
            for (index, layout) in layouts.enumerated() { try GuardRegistry.register(layout, label: label(index)) }
            ensure(GuardRegistry.count == baseline + stacks, "count \(GuardRegistry.count) after registering")
            for (index, layout) in layouts.enumerated() {
                let entry = GuardRegistry.entry(guarding: layout.base + 100)
                ensure(
                    entry?.usableRange == layout.usableRange && entry?.label == label(index),
                    "stack \(index): \(String(describing: entry))")
            }
            // Registered again in place without a label (in the last segment): the old label goes.
            let last = stacks - stacks % 7
            try GuardRegistry.register(layouts[last])
            ensure(GuardRegistry.entry(forStackAt: layouts[last].usableBottom)?.label == "", "replaced label kept")
            for layout in layouts.reversed() where layout.base % (16 << 10) == 0 {
                ensure(GuardRegistry.unregister(layout))
            }
            for layout in layouts {
                let registered = layout.base % (16 << 10) != 0
                ensure((GuardRegistry.entry(guarding: layout.base) != nil) == registered, "after removing half")
            }
            // The slots the labelled half left are taken again by stacks without labels: none inherits one.
            let removed = layouts.filter { $0.base % (16 << 10) == 0 }
            for layout in removed { try GuardRegistry.register(layout) }
            for layout in removed {
                let found = GuardRegistry.entry(forStackAt: layout.usableBottom)?.label
                ensure(found == "", "a reused slot kept the label \(String(describing: found))")
            }
            for layout in layouts { ensure(GuardRegistry.unregister(layout)) }
            ensure(GuardRegistry.count == baseline, "count \(GuardRegistry.count) after unregistering")
        }
    }
}
