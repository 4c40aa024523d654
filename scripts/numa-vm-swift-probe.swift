// numa-vm-swift-probe: proves a Swift binary (static Swift stdlib) runs in
// scripts/numa-vm and can call libnuma.  scripts/numa-vm-selftest builds it:
//
//   swiftc -O -static-stdlib -I <dir with module.modulemap> -lnuma \
//       scripts/numa-vm-swift-probe.swift -o numa-vm-swift-probe
//
// where module.modulemap is
//   module CNuma [system] { header "/usr/include/numa.h" link "numa" export * }
//
// Output:
//   swift nodes configured=<n> max_node=<n>
//   swift bind node=<n> pages=16 on_node=<count>     (per node with memory)
//   swift done
import CNuma
#if canImport(Glibc)
import Glibc
#endif

guard numa_available() >= 0 else {
    print("swift numa_available=-1")
    exit(1)
}
let maxNode = numa_max_node()
print("swift nodes configured=\(numa_num_configured_nodes()) max_node=\(maxNode)")

let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
let pageCount = 16
for node in 0...maxNode {
    var free: Int64 = 0
    guard numa_node_size64(node, &free) > 0 else {
        print("swift node=\(node) memoryless")
        continue
    }
    // numa_alloc_onnode = mmap + mbind(MPOL_BIND) before the first touch.
    guard let raw = numa_alloc_onnode(pageCount * pageSize, node) else {
        print("swift bind node=\(node) error=alloc")
        continue
    }
    let bytes = raw.bindMemory(to: UInt8.self, capacity: pageCount * pageSize)
    var pages: [UnsafeMutableRawPointer?] = []
    for i in 0..<pageCount {
        bytes[i * pageSize] = 1
        pages.append(raw + i * pageSize)
    }
    var status = [Int32](repeating: -1, count: pageCount)
    let rc = numa_move_pages(0, UInt(pageCount), &pages, nil, &status, 0)
    let onNode = status.filter { $0 == node }.count
    print("swift bind node=\(node) pages=\(pageCount) on_node=\(rc == 0 ? onNode : -1)")
    numa_free(raw, pageCount * pageSize)
}
print("swift done")
