@_spi(Benchmarks) import GuardPages
import Testing

@Suite("Prefault plans")
struct PrefaultPlanTests {
    @Test("The plan walks down from the top one page at a time and never reaches the guard",
          arguments: [(4096, 65536), (65536, 1 << 20), (2 << 20, 4 << 20)])
    func order(pageSize: Int, usable: Int) throws {
        let layout = try StackLayout(base: 0x4000_0000, sizes: StackSizes(usableSize: usable, guardSize: 65536, pageSize: pageSize))
        let pages = Array(try PrefaultPlan(layout: layout, depth: .all))
        #expect(pages.count == usable / pageSize)
        #expect(pages.first == layout.top - UInt(pageSize))
        #expect(pages.last == layout.usableBottom)
        for (higher, lower) in zip(pages, pages.dropFirst()) {
            #expect(higher - lower == UInt(pageSize))
        }
        #expect(pages.allSatisfy { layout.usableRange.contains($0) && !layout.guardRange.contains($0) })
    }

    @Test("A depth covers the top bytes, rounded up to pages, clamped to the usable range")
    func depth() throws {
        let layout = try StackLayout(base: 0x4000_0000, sizes: StackSizes(usableSize: 65536, guardSize: 4096))
        #expect(try PrefaultPlan(layout: layout, depth: .top(bytes: 0)).pageCount == 0)
        #expect(try PrefaultPlan(layout: layout, depth: .top(bytes: 1)).pageCount == 1)
        #expect(try PrefaultPlan(layout: layout, depth: .top(bytes: 8193)).pageCount == 3)
        #expect(try PrefaultPlan(layout: layout, depth: .top(bytes: Int.max)).pageCount == 16)
        #expect(try PrefaultPlan(layout: layout, depth: .top(bytes: 8192)).range == (layout.top - 8192)..<layout.top)
        #expect(throws: StackError.self) { try PrefaultPlan(layout: layout, depth: .top(bytes: -1)) }
    }
}
