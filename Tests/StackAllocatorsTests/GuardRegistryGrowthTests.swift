@_spi(Benchmarks) import OverflowDetection
import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import StackTestSupport
import Testing

// An exit test: the registry is process-wide, and RSS must not move for other tests' stacks.

@Suite(
    "Guard registry growth",
    .disabled(if: threadSanitizerActive, "ThreadSanitizer's shadow memory swamps the resident set this measures"))
struct GuardRegistryGrowthTests {
    /// 4,194,305 synthetic stacks (one page of guard, one usable) in a PROT_NONE reservation the registry
    /// never touches: about 240 MB of registry at the peak, a few seconds.
    @Test("More stacks than the old fixed cap register, a new allocator still gets a guarded stack, and removal hands the memory back")
    func beyondTheOldCap() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let count = 4_194_305  // one more than 1,024 chunks of 4,096 entries
            let page = systemPageSize
            let span = count * 2 * page
            let region = mmap(nil, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            ensure(region != MAP_FAILED, "reserving \(span) bytes of address space failed: errno \(errno)")
            defer { ensure(munmap(region, span) == 0, "munmap: errno \(errno)") }
            let base = UInt(bitPattern: region)
            let sizes = try StackSizes(usableSize: page, guardSize: page)
            func layout(_ index: Int) throws -> StackLayout { try StackLayout(base: base + UInt(index * 2 * page), sizes: sizes) }

            let baseline = GuardRegistry.count
            let before = try SystemFile.processStatusBytes("VmRSS")
            for index in 0..<count { try GuardRegistry.register(layout(index)) }
            ensure(GuardRegistry.count == baseline + count, "count \(GuardRegistry.count) after registering")
            let full = try SystemFile.processStatusBytes("VmRSS")
            // 40 bytes of slot and 11-21 bytes of index per stack: the kernel must see them, and no label
            // memory, since none of these stacks has a label.
            let perStack = (full - before) / count
            ensure((48...64).contains(perStack), "VmRSS grew by \(perStack) bytes per stack for \(count) stacks")
            for index in stride(from: 0, to: count, by: 4093) {
                let expected = try layout(index)
                let found = GuardRegistry.entry(guarding: expected.base)
                ensure(found?.usableRange == expected.usableRange, "stack \(index): found \(String(describing: found))")
            }

            let allocator = try MmapStackAllocator()
            do {
                let stack = try allocator.allocate(StackRequest(usableSize: 512 << 10))
                ensure(GuardRegistry.entry(guarding: stack.guardRange.lowerBound)?.usableRange == stack.descriptor.layout.usableRange)
                let accessible = try Probe.isAccessible(stack.guardRange.lowerBound)
                ensure(!accessible, "the new stack's guard is accessible")
            }

            for index in 0..<count {
                let removed = GuardRegistry.unregister(try layout(index))
                ensure(removed, "unregistering stack \(index) failed")
            }
            ensure(GuardRegistry.count == baseline, "count \(GuardRegistry.count) after unregistering")
            let after = try SystemFile.processStatusBytes("VmRSS")
            // Within 10% of the start, plus 8 MiB of slack for the test runtime's own noise (malloc, stacks).
            ensure(
                after <= before + before / 10 + (8 << 20),
                "VmRSS \(after) bytes after removing every stack: \(before) before, \(full) at the peak")
        }
    }
}
