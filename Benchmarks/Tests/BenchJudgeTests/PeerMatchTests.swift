import CPeers
import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import Testing

/// The C peers that stand for "our syscalls" make them as we do, as the kernel sees it.
@Suite("Peers matched")
struct PeerMatchTests {
    /// The kernel's VmFlags of the mapping holding `address` (/proc/self/smaps), sorted.
    static func vmFlags(at address: UInt) throws -> [Substring] {
        let smaps = try SystemFile.read("/proc/self/smaps")
        var inside = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if let range = fields.first, let dash = range.firstIndex(of: "-"),
                let low = UInt(range[..<dash], radix: 16), let high = UInt(range[range.index(after: dash)...], radix: 16)
            {
                inside = (low..<high).contains(address)
            } else if inside, fields.first == "VmFlags:" {
                return fields.dropFirst().sorted()
            }
        }
        throw SmapsMissing(address: address)
    }

    struct SmapsMissing: Error { let address: UInt }

    @Test("The C stack peers map with our flags: the kernel gives their mapping the VmFlags it gives ours")
    func peerMapsLikeUs() throws {
        let size = 64 << 10
        let allocator = try MmapStackAllocator()
        let stack = try allocator.allocate(StackRequest(usableSize: size, guardSize: 0))
        let ours = try Self.vmFlags(at: stack.descriptor.layout.base)
        stack.release()

        let mapped = fs_peer_map_stack(size, StackLayout.mappingFlags)
        let peer = try #require(mapped != MAP_FAILED ? mapped : nil)
        defer { munmap(peer, size) }
        let theirs = try Self.vmFlags(at: UInt(bitPattern: peer))
        #expect(theirs == ours)
        // What the flags are for: no swap reserved for untouched pages, no transparent huge pages.
        #expect(ours.contains("nr"))
    }
}
