import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import StackTestSupport
import Testing

/// Sets the soft limit `resource` to what the process holds now (`field` of /proc/self/status) plus `room`
/// bytes, and returns what it holds.
private func leaveRoom(_ room: Int, under resource: __rlimit_resource, counting field: String) throws -> Int {
    let held = try SystemFile.processStatusBytes(field)
    var limit = rlimit()
    precondition(getrlimit(__rlimit_resource_t(resource.rawValue), &limit) == 0)
    limit.rlim_cur = rlim_t(held + room)
    precondition(setrlimit(__rlimit_resource_t(resource.rawValue), &limit) == 0, "setrlimit: errno \(errno)")
    return held
}

/// A process under an address-space limit (`ulimit -v`) or a data limit (`ulimit -d`) smaller than a slab
/// region: the slab maps smaller regions instead of failing, and leaves room for the rest of the process.
@Suite("A slab under an address-space limit", needsNoSanitizerUnderAddressLimit)
struct SlabAddressSpaceTests {
    @Test("Under ulimit -v or ulimit -d a slab maps smaller regions, logs it naming the limit, leaves room for malloc, and trim unmaps them all",
          arguments: ["ulimit -v", "ulimit -d"])
    func slabShrinksRegions(_ command: String) async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [command] in
            // A thread arena (64 MiB) made meanwhile would count against the limit and the end's figure.
            mallocInOneArena()
            // RLIMIT_AS counts every mapping (VmSize), RLIMIT_DATA the private writable ones (VmData).
            let (resource, field) = command == "ulimit -v" ? (RLIMIT_AS, "VmSize") : (RLIMIT_DATA, "VmData")
            // Room for 256 MiB more than the process holds: half of a default region (4,096 stacks of
            // 64 KiB with their 64 KiB guards).
            let before = try leaveRoom(256 << 20, under: resource, counting: field)
            let (logger, log) = CapturingLogHandler.logger()
            let slab = try SlabStackAllocator(logger: logger)
            let count = 1_000
            let storage = UnsafeMutablePointer<Stack>.allocate(capacity: count)
            defer { storage.deallocate() }
            for made in 0..<count {
                (storage + made).initialize(to: try slab.allocate(StackRequest(usableSize: 64 << 10)))
            }
            ensure(slab.regionSize <= 128 << 20, "regions of \(slab.regionSize) bytes")
            let notices = log.all.filter { $0.level == .notice && $0.message.contains(command) }
            ensure(!notices.isEmpty, "nothing logged: \(log.all)")
            // The slab took at most half of the room each time it found less than a region: malloc still
            // finds 32 MiB.
            let block = malloc(32 << 20)
            ensure(block != nil, "malloc of 32 MiB failed next to the slab's regions")
            free(block)
            storage.deinitialize(count: count)
            slab.trim()
            let after = try SystemFile.processStatusBytes(field)
            ensure(after < before + (16 << 20), "\((after - before) >> 20) MiB of \(field) kept after trim")
        }
    }

    @Test("Under ulimit -v the slab finds the room by reading it: no mapping, not even a moment's trial, takes more than half")
    func slabNeverTakesTheRoom() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            mallocInOneArena()
            _ = try leaveRoom(256 << 20, under: RLIMIT_AS, counting: "VmSize")
            let slab = try SlabStackAllocator()
            // An armed plan for a step the slab never takes (it binds nothing) records every mmap it makes.
            FailureInjection.fail(.bind, with: .invalidArgument)
            let stack = try slab.allocate(StackRequest(usableSize: 64 << 10))
            let largest = FailureInjection.reset().map(\.count).max() ?? 0
            ensure(largest <= 128 << 20, "a mapping of \(largest >> 20) MiB, more than half of the room (256 MiB)")
            ensure(largest > 0, "no mapping recorded")
            _ = consume stack
            slab.trim()
        }
    }
}
