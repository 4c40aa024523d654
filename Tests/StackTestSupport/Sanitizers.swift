import CStackSupport
import Glibc
import StackDiagnostics
import Testing

/// Whether this test process runs under ThreadSanitizer (its runtime is linked in).
public let threadSanitizerActive = Sanitizer.loaded == .thread

/// Whether this test process runs under AddressSanitizer (its runtime is linked in).
public let addressSanitizerActive = Sanitizer.loaded == .address

/// An address in the stack the caller runs on. The address of a local is not one under
/// AddressSanitizer, which keeps locals whose address is taken on its fake stack, on the heap.
public func currentStackAddress() -> UInt { UInt(fs_stack_address()) }

/// For tests that need real SIGSEGV deaths or exact map counts: ThreadSanitizer catches SIGSEGV itself
/// (the child exits 66 instead) and maps memory of its own, so they are skipped under it.
public let needsNoThreadSanitizer = ConditionTrait.disabled(
    if: threadSanitizerActive,
    "ThreadSanitizer takes SIGSEGV for itself and maps memory of its own: real guard faults and map counts cannot be observed under it")

/// For tests that run a child under `ulimit -v`: a ThreadSanitizer build re-executes itself without the
/// limit (its shadow memory needs terabytes of address space), so the limit cannot be tested under it.
public let needsNoThreadSanitizerUnderAddressLimit = ConditionTrait.disabled(
    if: threadSanitizerActive,
    "a ThreadSanitizer build cannot run under ulimit -v: its shadow memory needs terabytes of address space")

/// For tests of the frame sizes the compiler chose: AddressSanitizer puts redzones around locals and
/// moves large ones to its fake stack, so in an instrumented build those frames are variable.
public let needsUninstrumentedFrames = ConditionTrait.disabled(
    if: addressSanitizerActive,
    "AddressSanitizer moves large locals to its fake stack: the fixtures' frames are variable in this build")
