import CSandbox
import Glibc
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackAllocators
import StackTestSupport
import Testing

/// A process whose seccomp profile refuses madvise(2) (EPERM, as container profiles return it): released
/// stacks still reach their next owner zeroed, nothing is leaked for good, and errors blame the profile,
/// not the kernel.
@Suite("madvise refused by a seccomp profile", needsNoSanitizer)
struct RefusedAdviceTests {
    @Test("A released slab stack is zeroed in place, reused, and its region unmapped by trim")
    func slabZeroesInstead() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            ensure(fs_test_refuse_madvise(EPERM) == 0, "seccomp: errno \(errno)")
            let slab = try SlabStackAllocator(.init(usableSize: 64 << 10, guardMode: .protNone))
            let request = StackRequest(usableSize: 64 << 10)
            let first = try slab.allocate(request)
            memset(first.usableBottom, 0xAB, first.usableSize)
            let base = first.descriptor.layout.base
            first.release()
            let again = try slab.allocate(request)
            let zero = UnsafeRawBufferPointer(start: again.usableBottom, count: again.usableSize).allSatisfy { $0 == 0 }
            ensure(again.descriptor.layout.base == base && zero, "reused: \(again.descriptor.layout.base == base), zero: \(zero)")
            again.release()
            slab.trim()
            ensure(slab.stats.releaseFailures == 0, "\(slab.stats.releaseFailures) release failures")
            let unmapped = try Probe.isUnmapped(base..<(base + UInt(systemPageSize)))
            ensure(unmapped, "the region is still mapped after trim")
        }
    }

    @Test("A pool whose watermark discards are refused counts each and logs it once", arguments: PooledStackAllocator.HotWatermark.Timing.allCases)
    func poolLogsOnce(_ timing: PooledStackAllocator.HotWatermark.Timing) async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [timing = timing as PooledStackAllocator.HotWatermark.Timing] in
            ensure(fs_test_refuse_madvise(EPERM) == 0, "seccomp: errno \(errno)")
            let (logger, log) = CapturingLogHandler.logger()
            let request = StackRequest(usableSize: 256 << 10)
            let configuration = PooledStackAllocator.Configuration(stack: request, hotWatermark: .init(bytes: 16 << 10, timing: timing))
            let pool = try PooledStackAllocator(wrapping: MmapStackAllocator(), configuration, logger: logger)
            for _ in 0..<5 {
                let stack = try pool.allocate(request)
                memset(stack.usableBottom, 0xAB, stack.usableSize)
                stack.release()
                pool.trim()
            }
            ensure(pool.stats.releaseFailures >= 5, "\(pool.stats.releaseFailures) release failures counted")
            ensure(log.count(.error) == 1, "\(log.count(.error)) errors logged: \(log.all)")
        }
    }

    @Test("A refused MADV_HUGEPAGE is blamed on what refused it",
          .enabled(if: ["madvise", "always"].contains(HugePageSystem.transparentHugePageMode() ?? "never"), "needs THP mode madvise or always"),
          arguments: [(EPERM, "a seccomp filter"), (EINVAL, "CONFIG_TRANSPARENT_HUGEPAGE")])
    func transparentNamesTheCause(_ error: Int32, _ cause: String) async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [error = error as Int32, cause = cause as String] in
            ensure(fs_test_refuse_madvise(error) == 0, "seccomp: errno \(errno)")
            do {
                _ = try HugePageStackAllocator().allocate(StackRequest(usableSize: 64 << 10, pages: .huge(HugePageRequest(.transparent))))
                fail("a transparent huge page stack was granted with madvise refused")
            } catch {
                let text = "\(error)"
                let other = cause == "a seccomp filter" ? "CONFIG_TRANSPARENT_HUGEPAGE" : "seccomp"
                ensure(text.contains("MADV_HUGEPAGE") && text.contains(cause) && !text.contains(other), text)
            }
        }
    }
}
