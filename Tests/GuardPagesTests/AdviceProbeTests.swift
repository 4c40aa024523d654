import CSandbox
@_spi(Benchmarks) import GuardPages
import Glibc
import StackTestSupport
import Testing

/// What a missing madvise advice is blamed on: a kernel that predates it refuses it with EINVAL; a
/// container's seccomp profile refuses madvise itself with EPERM or ENOSYS, which no kernel upgrade fixes.
@Suite("madvise probes", needsNoSanitizer)
struct AdviceProbeTests {
    @Test("A seccomp filter that refuses madvise is named as such, with the errno, not as an old kernel",
          arguments: [EPERM, ENOSYS])
    func refusedBySeccomp(_ error: Int32) async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [error = error as Int32] in
            // The probes run once per process, on first use: after the filter, in this child.
            ensure(fs_test_refuse_madvise(error) == 0, "seccomp: errno \(errno)")
            for probe in [GuardInstaller.lightweightGuards, Prefault.populateWrite] {
                let missing = probe.missing ?? ""
                ensure(!probe.isSupported, "a probe passed with madvise refused")
                ensure(missing.contains("(\(error))") && missing.contains("seccomp") && !missing.contains("needs Linux"), missing)
            }
            ensure(!GuardInstaller.lightweightGuardsSupported && !Prefault.populateSupported)
        }
    }

    @Test("EINVAL, what a kernel without the advice returns, is named as the kernel version it needs")
    func refusedByAnOldKernel() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            ensure(fs_test_refuse_madvise(EINVAL) == 0, "seccomp: errno \(errno)")
            let guards = GuardInstaller.lightweightGuards.missing ?? ""
            let populate = Prefault.populateWrite.missing ?? ""
            ensure(guards.contains("needs Linux >= 6.13 (running \(kernelRelease))"), guards)
            ensure(populate.contains("needs Linux >= 5.14 (running \(kernelRelease))"), populate)
            // This kernel is newer than both: the filter, not the kernel, is the likelier cause, and is named.
            ensure(guards.contains("seccomp") == (kernelVersion.map { $0 >= (6, 13) } ?? false), guards)
            ensure(populate.contains("seccomp") == (kernelVersion.map { $0 >= (5, 14) } ?? false), populate)
        }
    }
}
