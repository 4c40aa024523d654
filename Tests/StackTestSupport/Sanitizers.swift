import Glibc
import Testing

/// Whether this test process runs under ThreadSanitizer (its runtime is linked in).
public let threadSanitizerActive: Bool = dlsym(nil, "__tsan_init") != nil  // nil: RTLD_DEFAULT, every loaded object

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
