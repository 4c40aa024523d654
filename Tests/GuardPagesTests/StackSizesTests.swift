import GuardPages
import Testing

@Suite("Stack sizes and layouts")
struct StackSizesTests {
    @Test("Sizes round up to the page size; a zero guard stays unguarded")
    func rounding() throws {
        let sizes = try StackSizes(usableSize: 1, guardSize: 1)
        #expect(sizes.usableSize == systemPageSize)
        #expect(sizes.guardSize == systemPageSize)
        #expect(try StackSizes(usableSize: 100_000, guardSize: 0).guardSize == 0)
        #expect(try StackSizes(usableSize: 3 << 20, guardSize: 4096, pageSize: 2 << 20).usableSize == 4 << 20)
    }

    @Test("Zero, negative and absurd sizes are errors, never traps", arguments: [0, -1, Int.min, Int.max, Int.max - 4094, 5 << 30])
    func badUsable(_ size: Int) {
        #expect(throws: StackError.self) { try StackSizes(usableSize: size, guardSize: 4096) }
        do {
            _ = try StackSizes(usableSize: size, guardSize: 4096)
        } catch {
            guard case .invalidSize = error.reason else { Issue.record("wrong error \(error)"); return }
        }
    }

    @Test("Guards beyond the sane bound or negative are errors", arguments: [-1, Int.max, StackSizes.maximumGuardSize + 1])
    func badGuard(_ guardSize: Int) {
        #expect {
            try StackSizes(usableSize: 65536, guardSize: guardSize)
        } throws: { error in
            (error as? StackError).map { if case .invalidGuard = $0.reason { true } else { false } } == true
        }
    }

    @Test("Page sizes must be powers of two of at least 4 KiB", arguments: [0, 1, 4095, 6000, -4096])
    func badPageSize(_ pageSize: Int) {
        #expect {
            try StackSizes(usableSize: 65536, guardSize: 4096, pageSize: pageSize)
        } throws: { error in
            (error as? StackError).map { if case .invalidPageSize = $0.reason { true } else { false } } == true
        }
    }

    @Test("A layout puts the guard below the usable range, and refuses a base that overflows or is not page-aligned, naming it")
    func layout() throws {
        let sizes = try StackSizes(usableSize: 65536, guardSize: 8192)
        let layout = try StackLayout(base: 0x10000, sizes: sizes)
        #expect(layout.guardRange == 0x10000..<0x12000)
        #expect(layout.usableRange == 0x12000..<0x22000)
        #expect(layout.top == 0x22000)
        #expect(throws: StackError.self) { try StackLayout(base: UInt.max & ~0xfff, sizes: sizes) }
        for base: UInt in [0x10001, 0x10010, 0] {
            let error = try #require(throws: StackError.self) { try StackLayout(base: base, sizes: sizes) }
            #expect(error.code == .invalidArgument)
            let expected = "invalid StackLayout.base 0x\(String(base, radix: 16)): it must be a non-null multiple of the "
                + "page size (\(systemPageSize) bytes)"
            #expect(error.message == expected, "\(error)")
        }
    }
}
