import GuardPages
@_spi(Benchmarks) import OverflowDetection
import Testing

@Suite("Canary")
struct CanaryTests {
    @Test("A clean canary passes; one overwritten byte anywhere in it is reported, naming the stack and its label")
    func corruption() throws {
        let stack = try ScratchStack(usable: 64 << 10, guardSize: 0)
        let layout = stack.layout
        try GuardRegistry.register(layout, label: "job-3@worker-2")
        defer { GuardRegistry.unregister(layout) }
        Canary.write(layout)
        #expect(Canary.isIntact(layout))
        try Canary.check(layout)
        let bottom = UnsafeMutablePointer<UInt8>(bitPattern: layout.usableBottom)!
        for offset in 0..<Canary.size {
            let saved = bottom[offset]
            bottom[offset] ^= 0x10
            #expect(throws: StackError.canaryCorrupted(stack: layout, label: "job-3@worker-2")) { try Canary.check(layout) }
            bottom[offset] = saved
        }
        #expect(Canary.isIntact(layout))
        // The byte just above the canary is the stack's own: writing it is no corruption.
        bottom[Canary.size] = 0xFF
        #expect(Canary.isIntact(layout))
    }

    @Test("The error names the stack, the usable size and the fix; an unregistered stack has no label")
    func description() throws {
        let stack = try ScratchStack(usable: 64 << 10, guardSize: 0)
        Canary.write(stack.layout)
        UnsafeMutablePointer<UInt8>(bitPattern: stack.layout.usableBottom)![0] ^= 1
        do {
            try Canary.check(stack.layout)
            Issue.record("a corrupted canary passed")
        } catch {
            #expect(error == .canaryCorrupted(stack: stack.layout, label: nil))
            #expect(error.description.contains("0x\(String(stack.layout.usableBottom, radix: 16))"))
            #expect(error.description.contains("65536 usable bytes"))
            #expect(error.description.contains("StackRequest.usableSize"))
        }
    }

    @Test("A canary copied from another stack does not pass: the pattern depends on the address")
    func copiedCanary() throws {
        let first = try ScratchStack(usable: 64 << 10, guardSize: 0)
        let second = try ScratchStack(usable: 64 << 10, guardSize: 0)
        Canary.write(first.layout)
        UnsafeMutableRawPointer(bitPattern: second.layout.usableBottom)!.copyMemory(
            from: UnsafeRawPointer(bitPattern: first.layout.usableBottom)!, byteCount: Canary.size)
        #expect(!Canary.isIntact(second.layout))
    }
}

@Suite("HighWaterMark")
struct HighWaterMarkTests {
    /// Writes one byte in every page of the top `bytes` of `layout`, and the lowest of those bytes.
    static func touch(_ bytes: Int, of layout: StackLayout) {
        let lowest = layout.top - UInt(bytes)
        for page in Swift.stride(from: layout.top - 1, through: lowest, by: -systemPageSize) {
            UnsafeMutablePointer<UInt8>(bitPattern: page)!.pointee = 1
        }
        UnsafeMutablePointer<UInt8>(bitPattern: lowest)!.pointee = 1
    }

    @Test("A stack that touched N KiB reports N KiB within one page, by residency and by painting",
          arguments: [1, 4, 10, 100, 250])
    func touchedKibibytes(kibibytes: Int) throws {
        let touched = kibibytes << 10
        let resident = try ScratchStack(usable: 256 << 10)
        #expect(try HighWaterMark.measure(resident.layout, by: .residency) == 0)
        Self.touch(touched, of: resident.layout)
        let byResidency = try HighWaterMark.measure(resident.layout, by: .residency)
        #expect(byResidency >= touched && byResidency - touched < systemPageSize, "residency: \(byResidency)")

        let painted = try ScratchStack(usable: 256 << 10)
        HighWaterMark.paint(painted.layout)
        #expect(try HighWaterMark.measure(painted.layout, by: .painted) == 0)
        Self.touch(touched, of: painted.layout)
        #expect(try HighWaterMark.measure(painted.layout, by: .painted) == touched)
    }

    @Test("Painting leaves the canary zone alone; a stack used to its last painted byte measures usable - 64")
    func canaryZone() throws {
        let stack = try ScratchStack(usable: 64 << 10, guardSize: 0)
        Canary.write(stack.layout)
        HighWaterMark.paint(stack.layout)
        #expect(Canary.isIntact(stack.layout))
        UnsafeMutablePointer<UInt8>(bitPattern: stack.layout.usableBottom + UInt(Canary.size))!.pointee = 0
        #expect(try HighWaterMark.measure(stack.layout, by: .painted) == (64 << 10) - Canary.size)
    }

    @Test("Recursion on a thread running on the stack: both methods see it, within one page of each other")
    func realThread() throws {
        var marks: [HighWaterMark.Method: Int] = [:]
        for method in HighWaterMark.Method.allCases {
            let stack = try ScratchStack(usable: 256 << 10)
            if method == .painted { HighWaterMark.paint(stack.layout) }
            try StackThread.run(on: stack.layout, name: "hwm-test") { _ = StackThread.use(kibibytes: 64) }
            marks[method] = try HighWaterMark.measure(stack.layout, by: method)
        }
        let residency = try #require(marks[.residency]), painted = try #require(marks[.painted])
        #expect(painted >= 64 << 10 && painted < 128 << 10, "painted: \(painted)")
        #expect(residency >= painted && residency - painted < systemPageSize, "residency \(residency), painted \(painted)")
    }
}
