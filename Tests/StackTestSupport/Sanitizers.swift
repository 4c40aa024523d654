import CStackSupport
import StackDiagnostics
import Testing

/// Whether this test process runs under ThreadSanitizer (its runtime is linked in).
public let threadSanitizerActive = Sanitizer.loaded == .thread

/// Whether this test process runs under AddressSanitizer (its runtime is linked in).
public let addressSanitizerActive = Sanitizer.loaded == .address

/// An address in the stack the caller runs on. The address of a local is not one under
/// AddressSanitizer, which keeps locals whose address is taken on its fake stack, on the heap.
public func currentStackAddress() -> UInt { UInt(fs_stack_address()) }

/// For tests that need real SIGSEGV deaths, exact map counts or malloc's own arenas: a sanitizer takes
/// SIGSEGV for itself (the child exits instead), maps memory and replaces malloc with allocators of its
/// own, so they are skipped under one.
public let needsNoSanitizer = ConditionTrait.disabled(
    if: Sanitizer.loaded != nil,
    Comment(rawValue: "\(Sanitizer.loaded?.rawValue ?? "a sanitizer") takes SIGSEGV for itself, maps memory and replaces "
        + "malloc: real guard faults, map counts and heap arenas cannot be observed under it"))

/// For tests that run a child under `ulimit -v`: a sanitizer's shadow memory needs terabytes of address
/// space (a ThreadSanitizer build re-executes itself without the limit, an AddressSanitizer one fails to
/// start), so the limit cannot be tested under one.
public let needsNoSanitizerUnderAddressLimit = ConditionTrait.disabled(
    if: Sanitizer.loaded != nil,
    Comment(rawValue: "a \(Sanitizer.loaded?.rawValue ?? "sanitizer") build cannot run under ulimit -v: its shadow memory "
        + "needs terabytes of address space"))

/// For tests of the frame sizes the compiler chose: AddressSanitizer puts redzones around locals and
/// moves large ones to its fake stack, so in an instrumented build those frames are variable.
public let needsUninstrumentedFrames = ConditionTrait.disabled(
    if: addressSanitizerActive,
    "AddressSanitizer moves large locals to its fake stack: the fixtures' frames are variable in this build")

/// For tests that need a thread without an alternate signal stack: AddressSanitizer gives every thread one.
public let needsNoAddressSanitizerSignalStack = ConditionTrait.disabled(
    if: addressSanitizerActive, "AddressSanitizer gives every thread an alternate signal stack of its own")
