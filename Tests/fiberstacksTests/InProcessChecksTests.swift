@_spi(Benchmarks) import GuardPages
import StackAllocators
import StackDiagnostics
import StackTestSupport
import Testing

@Suite("verify's checks run in-process")
struct InProcessChecksTests {
    @Test("Guard faults and NUMA read-backs from a test bundle: children are the fiberstacks next to it", needsNoSanitizer)
    func guardFaultsAndPlacement() {
        var report = VerifyReport()
        GuardFaultChecks.run(into: &report)
        NUMAChecks.run(into: &report)
        let faults = report.checks.filter { $0.name == "guard-fault" }
        for allocator in ["mmap/mprotect", "slab/mprotect", "pool/mmap"] {
            #expect(faults.contains { $0.allocator == allocator && $0.status == .pass }, "\(allocator): \(faults)")
        }
        #expect(report.checks.contains { $0.name == "bind-node0" && $0.status == .pass })
    }

    @Test("Under a low vm.max_map_count the checks that count map lines scale their mprotect stacks down to what the limit leaves, say so, and pass",
          needsNoSanitizer)
    func mapLinesUnderALowLimit() async {
        // In a child of its own: other tests would change the map count while these checks count lines.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            // Room for about 500 stacks above what the child maps now, after the reserve (a quarter of the limit).
            let limit = (try MapCount.current() + 1_000 + 16) * 4 / 3
            let mmap = try MmapStackAllocator(guardMode: .protNone)
            for (check, asked) in [
                ({ try SlabChecks.mapLines(mode: .protNone, limitOverride: limit) }, SlabChecks.mapLineStacks),
                ({ try MmapChecks.liveAndReleased(mmap, mode: .protNone, limitOverride: limit) }, 1000),
            ] as [(() throws -> (Bool, String), Int)] {
                let (passed, detail) = try check()
                let stacks = Int(detail.prefix { $0.isNumber }) ?? 0
                ensure(passed && (400...520).contains(stacks), detail)
                ensure(detail.contains("scaled down from \(asked)") && detail.contains("vm.max_map_count=\(limit)"), detail)
            }
        }
    }

    @Test("In a container without sysfs, every huge-page check that skips names the missing /sys mount, not the kernel",
          needsMountPrivilege)
    func hugePageSkipsWithoutSysfs() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            hideSysfs()
            var report = VerifyReport()
            HugePageChecks.run(into: &report)
            // A sanitizer's own mappings skip the leak check (process accounting): not a huge-page skip.
            let skips = report.checks.filter { $0.status == .skip && $0.capability != .processAccounting }
            ensure(skips.contains { $0.name == "exhaustion" }, "no exhaustion skip: \(report.checks)")
            for check in skips {
                ensure(check.detail.contains("sysfs is not mounted on /sys") && !check.detail.contains("CONFIG_"),
                       "\(check.name) \(check.allocator): \(check.detail)")
            }
        }
    }
}
