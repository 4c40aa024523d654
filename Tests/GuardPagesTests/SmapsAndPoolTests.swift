import Glibc
@testable import GuardPages
@_spi(Benchmarks) import StackAllocators
import StackDiagnostics
import Testing

@Suite("smaps and huge page discovery")
struct SmapsAndPoolTests {
    @Test("smaps text is summed over the VMAs that overlap the range, and only those")
    func parse() {
        let text = """
            7f0000000000-7f0000200000 rw-p 00000000 00:00 0
            Size:               2048 kB
            KernelPageSize:        4 kB
            Rss:                2048 kB
            AnonHugePages:      2048 kB
            Private_Hugetlb:       0 kB
            VmFlags: rd wr mr mw me ac hg
            7f0000200000-7f0000600000 rw-p 00000000 00:0f 123 /dev/hugepages/x (deleted)
            Size:               4096 kB
            KernelPageSize:     2048 kB
            Rss:                   0 kB
            AnonHugePages:         0 kB
            Shared_Hugetlb:        0 kB
            Private_Hugetlb:    4096 kB
            7f0000600000-7f0000601000 ---p 00000000 00:00 0
            Size:                  4 kB
            KernelPageSize:        4 kB
            """
        let both = Smaps.parse(text, overlapping: 0x7f00001ff000..<0x7f0000201000)
        #expect(both.mappings == 2 && both.mappedBytes == 6 << 20)
        #expect(both.kernelPageSizes == [4096, 2 << 20])
        #expect(both.anonHugeBytes == 2 << 20 && both.hugetlbBytes == 4 << 20 && both.hugeBytes == 6 << 20)
        let last = Smaps.parse(text, overlapping: 0x7f0000600000..<0x7f0000601000)
        #expect(last.mappings == 1 && last.kernelPageSizes == [4096] && last.hugeBytes == 0)
        #expect(Smaps.parse(text, overlapping: 0x1000..<0x2000) == SmapsUsage())
    }

    @Test("A small-page mapping of this process reads as such from /proc/self/smaps")
    func live() throws {
        let size = 16 * systemPageSize
        let address = try #require(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { precondition(munmap(address, size) == 0) }
        address.storeBytes(of: 1, as: UInt8.self)
        let start = UInt(bitPattern: address)
        let usage = try Smaps.usage(of: start..<start + UInt(size))
        #expect(usage.kernelPageSizes == [systemPageSize])
        #expect(usage.residentBytes >= systemPageSize && usage.hugetlbBytes == 0)
    }

    @Test("Pools are read per size, with the control file for the default size and the surplus counters")
    func pools() throws {
        let machine = try MachineCapabilities.current()
        for pool in machine.hugePagePools where pool.node == nil {
            let single = try #require(HugePageSystem.hugePagePool(pageSize: pool.pageSize))
            #expect(single.pageSize == pool.pageSize && single.controlFile == pool.controlFile)
            #expect(single.available <= single.free && single.overcommit != nil)
            if pool.pageSize == HugePageSystem.defaultHugePageSize() {
                #expect(pool.controlFile == "/proc/sys/vm/nr_hugepages")
            } else {
                #expect(pool.controlFile == "/sys/kernel/mm/hugepages/hugepages-\(pool.pageSize >> 10)kB/nr_hugepages")
            }
        }
        #expect(HugePageSystem.hugePagePool(pageSize: 12345) == nil)
        #expect(formatByteCount(2 << 20) == "2 MiB" && formatByteCount(1 << 30) == "1 GiB" && formatByteCount(1000) == "1000 B")
        #expect(formatSizeOption(2 << 20) == "2M" && formatSizeOption(1 << 30) == "1G" && formatSizeOption(64 << 10) == "64K")
        #expect(parseSize(formatSizeOption(1 << 30)) == 1 << 30)
    }
}
