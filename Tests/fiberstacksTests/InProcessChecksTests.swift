import CSandbox
import Glibc
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackAllocators
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

    @Test("In a container without sysfs, the default size's pool is read from /proc/meminfo and every huge-page check that skips names the missing /sys mount, not the kernel",
          needsMountPrivilege)
    func hugePageSkipsWithoutSysfs() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            hideSysfs()
            var report = VerifyReport()
            HugePageChecks.run(into: &report)
            // A sanitizer's own mappings skip the leak check (process accounting): not a huge-page skip.
            let skips = report.checks.filter { $0.status == .skip && $0.capability != .processAccounting }
            // The default size's pool is counted in /proc/meminfo: its exhaustion is checked without sysfs.
            if HugePageSystem.hugePagePool(pageSize: HugePageSystem.defaultHugePageSize()) != nil {
                ensure(report.checks.contains { $0.name == "exhaustion-strict" && $0.status == .pass }, "\(report.checks)")
            }
            for check in skips {
                ensure(check.detail.contains("sysfs is not mounted on /sys") && !check.detail.contains("CONFIG_"),
                       "\(check.name) \(check.allocator): \(check.detail)")
            }
        }
    }

    @Test("With /sys/kernel/mm/hugepages masked, the default size's pool comes from /proc/meminfo, every huge-page row that skips names the masked path, and a required gigantic-page check fails instead of vanishing",
          needsMountPrivilege)
    func hugePagePoolsMasked() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let defaultSize = HugePageSystem.defaultHugePageSize()
            let defaultPool = HugePageSystem.hugePagePool(pageSize: defaultSize)
            hideDirectory(HugePageSystem.hugePagePoolDirectory)
            let fromMeminfo = HugePageSystem.hugePagePool(pageSize: defaultSize)
            ensure(defaultPool == nil || (fromMeminfo?.total == defaultPool?.total && fromMeminfo?.countedIn == "/proc/meminfo"),
                   "sysfs: \(String(describing: defaultPool)); masked: \(String(describing: fromMeminfo))")
            var report = VerifyReport()
            report.required = [.giganticPages]
            HugePageChecks.run(into: &report)
            let gigantic = report.checks.filter { $0.capability == .giganticPages }
            ensure(!gigantic.isEmpty && gigantic.allSatisfy { $0.status == .fail }, "gigantic rows: \(gigantic)")
            for check in report.checks where check.status != .pass && check.capability != .processAccounting {
                ensure(!check.detail.contains("CONFIG_") && !check.detail.contains("needs a free default-size huge page"),
                       "\(check.name) \(check.allocator): \(check.detail)")
                ensure(check.detail.contains("\(HugePageSystem.hugePagePoolDirectory) is hidden") || check.capability != .giganticPages,
                       "\(check.name) \(check.allocator): \(check.detail)")
            }
        }
    }

    @Test("With /sys/kernel/mm/transparent_hugepage masked, the THP skips name the masked path, not the kernel",
          needsMountPrivilege)
    func transparentHugePagesMasked() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            hideDirectory(HugePageSystem.transparentHugePageDirectory)
            var report = VerifyReport()
            HugePageChecks.run(into: &report)
            let transparent = report.checks.filter { $0.capability == .thp }
            ensure(!transparent.isEmpty, "no THP row: \(report.checks)")
            for check in transparent {
                ensure(check.detail.contains("\(HugePageSystem.transparentHugePageDirectory) is hidden: \(HugePageSystem.transparentHugePageDirectory) is a tmpfs")
                       && !check.detail.contains("CONFIG_"), "\(check.allocator): \(check.detail)")
            }
        }
    }

    @Test("Where mincore is refused, a pool's scrub cannot run and the scrub check fails: fresh memory reading zero proves nothing")
    func scrubRefused() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            // The scrub finds the resident pages with mincore(2): refused, the pool gives the stack back.
            FailureInjection.fail(.residency, with: .permissionDenied, times: 1_000_000)
            var report = VerifyReport()
            PooledChecks.run(into: &report)
            let scrubs = report.checks.filter { $0.name == "scrub" }
            ensure(scrubs.count == 2 && scrubs.allSatisfy { $0.status == .fail && $0.detail.contains("scrubs that failed: 1") }, "\(scrubs)")
        }
    }

    @Test("Where a seccomp profile refuses sigaltstack (EPERM), the overflow diagnostic checks skip naming it (a failure only when required)",
          .disabled(if: Sanitizer.loaded == .address,
                    "AddressSanitizer gives each new thread an alternate signal stack of its own, and aborts where sigaltstack is refused"))
    func alternateStackRefused() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            ensure(fs_test_refuse_sigaltstack(EPERM) == 0, "seccomp: errno \(errno)")
            var report = VerifyReport()
            OverflowChecks.run(into: &report)
            let diagnostics = report.checks.filter { $0.name.hasPrefix("overflow-diagnostic") }
            ensure(diagnostics.count == 2 && diagnostics.allSatisfy {
                $0.status == .skip && $0.capability == .overflowDiagnostic && $0.detail.contains("sigaltstack(2) fails")
                    && $0.detail.contains("seccomp")
            }, "\(diagnostics)")
        }
    }

    @Test("Where a seccomp profile refuses get_mempolicy (EPERM), NUMA is unavailable, naming the call, its errno and the profile")
    func numaCallsRefused() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            // libnuma's numa_available() passes an EPERM; the topology must not.
            ensure(fs_test_refuse_get_mempolicy(EPERM) == 0, "seccomp: errno \(errno)")
            do {
                _ = try NUMATopology.current()
                ensure(false, "the topology was read with get_mempolicy refused")
            } catch {
                let text = "\(error)"
                ensure(text.contains("get_mempolicy: Operation not permitted") && text.contains("seccomp"), text)
            }
        }
    }
}
