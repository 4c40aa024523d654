@_spi(Benchmarks) import GuardPages
import Glibc
import StackTestSupport
import Testing

/// The CPUs this process may run on, on machines of any size: a kernel with more than 1024 possible CPUs
/// refuses glibc's 1024-bit mask with EINVAL, and the mask must grow until the kernel takes it.
@Suite("CPU affinity masks")
struct CPUAffinityTests {
    @Test("A mask the kernel refuses as too small grows until it is taken; another error or a mask past any kernel ends the search")
    func maskGrows() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let plain = try Syscall.processAffinity().get()
            ensure(!plain.isEmpty, "no CPU")
            // As on a machine of 4096 possible CPUs: 128 and 256 bytes refused, 512 taken.
            FailureInjection.fail(.cpuAffinity, with: .invalidArgument, times: 2)
            let grown = Syscall.processAffinity()
            ensure(!FailureInjection.isArmed(.cpuAffinity), "the refusals were not all seen")
            ensure((try? grown.get()) == plain, "\(grown) after two refusals, \(plain) without")
            FailureInjection.fail(.cpuAffinity, with: .invalidArgument, times: 1_000)
            let refused = Syscall.processAffinity()
            FailureInjection.reset()
            guard case .failure(.invalidArgument) = refused else { fail("\(refused) where every mask is refused") }
            FailureInjection.fail(.cpuAffinity, with: .notPermitted, times: 2)
            let forbidden = Syscall.processAffinity()
            ensure(FailureInjection.isArmed(.cpuAffinity), "EPERM was retried with a larger mask")
            FailureInjection.reset()
            guard case .failure(.notPermitted) = forbidden else { fail("\(forbidden) where EPERM was returned") }
            // Pinning to an allowed CPU works with the mask sized to it.
            ensure((try? Syscall.setThreadAffinity([plain[0]]).get()) != nil, "pinning to CPU \(plain[0]) failed")
            guard case .failure(.invalidArgument) = Syscall.setThreadAffinity([-1]) else { fail("a negative CPU was not refused") }
        }
    }
}
