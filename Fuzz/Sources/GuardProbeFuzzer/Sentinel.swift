import CFuzzSupport
import FuzzSupport
import Glibc

/// Pages filled with a pattern, shared between the fuzzer and its children through a memfd: a child
/// maps them directly below its stack's guard, and the fuzzer checks afterwards that nothing wrote there.
///
/// `@unchecked Sendable`: libFuzzer runs inputs on one thread, and a child writes only its own copy of
/// the object (the shared pages are the point).
final class Sentinel: @unchecked Sendable {
    /// Bytes of the sentinel: as large as the largest guard a case uses, so a frame that jumps the
    /// guard lands in it.
    let size: Int
    let fd: Int32
    /// The fuzzer's own view of the pages.
    let view: UnsafeMutableRawPointer
    static let pattern: UInt8 = 0xA5

    init(size: Int) {
        self.size = size
        fd = fz_memfd("fiberstacks-fuzz-sentinel")
        check(fd >= 0, "memfd_create failed: errno \(errno)")
        check(ftruncate(fd, off_t(size)) == 0, "ftruncate of the sentinel failed: errno \(errno)")
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        check(mapped != MAP_FAILED, "mapping the sentinel failed: errno \(errno)")
        view = mapped!
    }

    /// Refills the pattern (in the fuzzer, before each case).
    func reset() {
        view.initializeMemory(as: UInt8.self, repeating: Self.pattern, count: size)
    }

    /// Offsets of bytes that no longer hold the pattern: the first few, and how many in all.
    func damage() -> (count: Int, first: [Int]) {
        let bytes = view.assumingMemoryBound(to: UInt8.self)
        var count = 0
        var first: [Int] = []
        for offset in 0..<size where bytes[offset] != Self.pattern {
            count += 1
            if first.count < 4 { first.append(offset) }
        }
        return (count, first)
    }

    /// Maps the sentinel so that it ends at `address` (in a child). False when something is there.
    func mapBelow(_ address: UInt) -> Bool {
        guard address >= UInt(size) else { return false }
        let wanted = UnsafeMutableRawPointer(bitPattern: address - UInt(size))
        let mapped = mmap(wanted, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0)
        return mapped == wanted
    }
}
