import FiberScheduler
import GuardPages
import StackAllocators
import StackTestSupport
import Testing

@Suite("The live fibers' stacks from allocators outside the package: an overlap is found wherever it lies")
struct FiberStackRangesTests {
    /// Where the stacks lie: an address range nothing is mapped at (they are only recorded, never touched),
    /// 64 MiB wide, so stacks of up to 3 MiB overlap often and span up to three 2 MiB blocks.
    static let window: UInt = 0x1000_0000_0000
    static let windowPages: UInt64 = 16384

    @Test("Random stacks are refused exactly when they overlap a recorded one, checked against every pair")
    func matchesBruteForce() throws {
        let allocator = try MmapStackAllocator()
        let page = systemPageSize
        var random = XorShift(state: 0x5eed_0f57_ac0f_f1be)
        var recorded: [StackLayout] = []
        var accepted = 0, refused = 0
        defer { for stack in recorded { FiberStackRanges.remove(stack) } }
        for _ in 0..<4000 {
            if !recorded.isEmpty, random.next() % 3 == 0 {
                FiberStackRanges.remove(recorded.remove(at: Int(random.next() % UInt64(recorded.count))))
                continue
            }
            let sizes = try StackSizes(
                usableSize: Int(1 + random.next() % 768) * page, guardSize: Int(random.next() % 4) * 16 * page)
            let stack = try StackLayout(base: Self.window + UInt(random.next() % Self.windowPages) * UInt(page), sizes: sizes)
            let overlaps = recorded.filter { $0.base < stack.top && stack.base < $0.top }
            do {
                try FiberStackRanges.insert(stack, allocator: allocator)
                recorded.append(stack)
                accepted += 1
                try #require(overlaps.isEmpty, "\(stack) was accepted over \(overlaps)")
            } catch let error as StackError {
                refused += 1
                guard case .stackOverlapsLiveStack(let named, let live, let allocatorName) = error.reason else {
                    Issue.record("\(error)")
                    return
                }
                #expect(named == stack && overlaps.contains(live) && allocatorName == "MmapStackAllocator", "\(error)")
                try #require(!overlaps.isEmpty, "\(stack) was refused over nothing: \(error)")
            }
        }
        #expect(accepted > 500 && refused > 500, "accepted \(accepted), refused \(refused)")
        // Everything removed leaves nothing behind: the whole window can be recorded again.
        for stack in recorded { FiberStackRanges.remove(stack) }
        recorded = []
        let whole = try StackLayout(
            base: Self.window, sizes: StackSizes(usableSize: Int(Self.windowPages) * page + (3 << 20), guardSize: 0))
        try FiberStackRanges.insert(whole, allocator: allocator)
        FiberStackRanges.remove(whole)
    }
}
