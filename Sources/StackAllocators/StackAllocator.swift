@_exported import GuardPages

/// Something that hands out fiber stacks and takes them back.
///
/// Two requirements, one contract (corosensei's `Stack` trait is the model):
///
/// **Safety.** Every `Stack` returned by `allocate` must describe memory that is readable and writable
/// over `[usableBottom, top)`, exclusively owned by that stack until `release` is called for it, and
/// whose `guardMechanism` is true: `.lightweight` and `.protNone` mean every byte of `guardRange`
/// faults on access; `.canary` means the pattern is in place; `.none` promises nothing.
///
/// **Ownership.** A `Stack` is `~Copyable` and carries its allocator: it is given back when it is dropped
/// or consumed by `Stack.release()`. `release` is called by that path only (a `StackReleaseToken` cannot be
/// made outside this module). But `Stack.init` is public, for allocator implementers: a second `Stack`
/// built from a live stack's descriptor is released too. So `release` must check that `descriptor` is a
/// stack it handed out and has not taken back, against its own record, and refuse anything else: log it,
/// count it (`StackStatsRecorder.recordRefusedRelease()`), free nothing. The built-in allocators do, with a
/// serial in `StackDescriptor.tag`: that stops a double release and the release of a stale or made-up
/// descriptor. A copy of a live stack's descriptor is indistinguishable from the original: the first of
/// the two releases is honoured, the second refused. (`PooledStackAllocator`'s own stacks come back by a
/// path of their own, so it refuses every release that reaches `release`.)
public protocol StackAllocator: AnyObject, Sendable {
    /// Returns a stack satisfying `request`, or throws the error that names why not.
    func allocate(_ request: StackRequest) throws(StackError) -> Stack

    /// Takes back the memory described by `descriptor`, if it is a live stack of this allocator (refuses
    /// it otherwise). Failures here cannot be thrown (the caller is a deinit): log them and count them.
    func release(_ descriptor: StackDescriptor, token: StackReleaseToken)
}

/// Proof that a call to `StackAllocator.release` comes from a `Stack` being given back.
public struct StackReleaseToken: Sendable {
    init() {}
}

/// Stack allocators that keep counters.
public protocol StackStatsReporting {
    /// A snapshot of the counters.
    var stats: StackAllocatorStats { get }
}
