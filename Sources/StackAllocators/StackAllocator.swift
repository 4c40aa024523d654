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
/// **Ownership.** A `Stack` is `~Copyable` and carries its allocator: it is given back exactly once,
/// when it is dropped or consumed by `Stack.release()`. `release` is called by that path only; a
/// `StackReleaseToken` cannot be made outside this module, so nobody else can call it and a double
/// release cannot be written.
public protocol StackAllocator: AnyObject, Sendable {
    /// Returns a stack satisfying `request`, or throws the error that names why not.
    func allocate(_ request: StackRequest) throws(StackError) -> Stack

    /// Takes back the memory described by `descriptor`. Called exactly once per allocated stack.
    /// Failures here cannot be thrown (the caller is a deinit): log them and count them.
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
