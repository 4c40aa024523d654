@_exported import GuardPages
@_exported import OverflowDetection

/// Something that hands out fiber stacks and takes them back.
///
/// Two requirements, one contract (corosensei's `Stack` trait is the model). `Stack.guarded` does the
/// first four obligations for memory you mapped; `Tests/CustomAllocatorTests` holds a complete allocator.
///
/// 1. **Sizes.** At least `request.usableSize` usable bytes and `request.guardSize` guard bytes, rounded
///    by `StackSizes`; throw `.invalidArgument` (`StackSizes` throws it for you) for what you
///    cannot make, never trap. An allocator of one shape says so in `fixedSizes`. The scheduler refuses a
///    stack with fewer usable bytes than requested.
/// 2. **Guard.** `guardMechanism` must be true: `.lightweight` and `.protNone` mean every byte of
///    `guardRange` faults on access; `.canary` means the pattern is in place; `.none` promises nothing.
///    The scheduler probes this for each new stack and refuses one whose guard is not there.
/// 3. **Registration.** A hardware guard is in the guard registry while the stack lives, or an overflow is a
///    bare SIGSEGV instead of a line naming the fiber. A stack from `Stack.guarded` holds its
///    registration and ends it when it is given back: nothing to do by hand. (The scheduler registers a
///    guarded stack that holds none, but other users of your allocator get no such help.)
/// 4. **Prefault and placement.** Honour `request.prefault` (only the usable range, top down) and
///    `request.placement` (bind before the first touch), or throw.
/// 5. **Safety.** `[usableBottom, top)` is readable, writable and owned by that stack alone until it is
///    released. The scheduler refuses a stack whose top byte cannot be written.
/// 6. **Release.** A `Stack` is `~Copyable` and carries its allocator: it is given back when it is dropped
///    or consumed by `Stack.release()`, the only path that calls `release` (a `StackReleaseToken` cannot
///    be made outside this module). But `Stack.init` is public, for allocator implementers: a second
///    `Stack` built from a live stack's descriptor is released too. So `release` checks `descriptor`
///    against its own record of live stacks and refuses anything else (log it, count it, free nothing):
///    a second release, a stale descriptor, one it never made. A copy of a live stack's descriptor is
///    indistinguishable from the original: the first of the two releases is honoured, the second
///    refused. The built-in allocators do all of this, with a serial in `StackDescriptor.tag`.
///    (`PooledStackAllocator`'s own stacks come back by a path of their own, so it refuses every release
///    that reaches `release`.)
/// 7. **Threads.** `allocate` and `release` are called from any thread, at the same time: a scheduler's
///    workers on one NUMA node share one allocator, each allocating and releasing on its own thread, and a
///    `Stack` is released on whichever thread drops it. Guard your state with a lock or atomics. Neither
///    call may wait for a job of a scheduler that uses the allocator: it runs on that scheduler's worker
///    thread, which then cannot run the job.
///
/// A decorator (counting, tracing) cannot return the inner allocator's `Stack`: it keeps it in a box
/// keyed by usable bottom, returns `Stack(descriptor:allocator: self)` for the same memory, and drops
/// the box in its own `release`, which gives the inner stack back:
///
/// ```swift
/// final class TrackingAllocator: StackAllocator {
///     private final class Box: @unchecked Sendable {
///         let stack: Stack
///         init(_ stack: consuming Stack) { self.stack = stack }
///     }
///     private let inner: any StackAllocator
///     private let boxes = Mutex<[UInt: Box]>([:])
///
///     init(wrapping inner: any StackAllocator) { self.inner = inner }
///
///     func allocate(_ request: StackRequest) throws(StackError) -> Stack {
///         let box = Box(try inner.allocate(request))
///         let descriptor = box.stack.descriptor
///         boxes.withLock { $0[descriptor.layout.usableBottom] = box }
///         return Stack(descriptor: descriptor, allocator: self)
///     }
///
///     func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
///         boxes.withLock { boxes in
///             if boxes[descriptor.layout.usableBottom]?.stack.descriptor == descriptor {
///                 boxes[descriptor.layout.usableBottom] = nil  // releases the inner stack
///             }
///         }
///     }
/// }
/// ```
public protocol StackAllocator: AnyObject, Sendable {
    /// Returns a stack satisfying `request`, or throws the error that names why not.
    func allocate(_ request: StackRequest) throws(StackError) -> Stack

    /// Makes `count` stacks satisfying `request` and hands each to `body` as it is made (a fiber pool's
    /// first fill). The default calls `allocate(_:)` `count` times; an allocator that makes several stacks
    /// for less than one each (one mapping for all) implements it. On an error, from the allocator or from
    /// `body`, the stacks already handed over stay `body`'s and nothing else is left mapped. A scheduler
    /// refuses a batch that hands `body` another number of stacks than `count`.
    func allocate(_ request: StackRequest, count: Int, into body: (consuming Stack) throws(StackError) -> Void) throws(StackError)

    /// Takes back the memory described by `descriptor`, if it is a live stack of this allocator (refuses
    /// it otherwise). Failures here cannot be thrown (the caller is a deinit): log them and count them.
    func release(_ descriptor: StackDescriptor, token: StackReleaseToken)

    /// The sizes of every stack this allocator hands out, when it has one shape (a slab, a pool): the
    /// scheduler then asks for exactly these, so its own size setting cannot disagree. Nil (the default)
    /// for an allocator that makes any size.
    var fixedSizes: StackSizes? { get }
}

extension StackAllocator {
    /// Any size: nil.
    public var fixedSizes: StackSizes? { nil }

    /// One `allocate(_:)` per stack.
    public func allocate(
        _ request: StackRequest, count: Int, into body: (consuming Stack) throws(StackError) -> Void
    ) throws(StackError) {
        for _ in 0..<count { try body(try allocate(request)) }
    }
}

/// Proof that a call to `StackAllocator.release` comes from a `Stack` being given back.
public struct StackReleaseToken: Sendable {
    init() {}
}

/// The allocators of this package: each maps its stacks writable, installs the guard they claim and fails
/// when a system call that does so fails, so a consumer need not probe their stacks (`Stack.checkClaims`).
package protocol BuiltInStackAllocator: StackAllocator {
    /// Whether every stack it hands out is what its descriptor claims (a pool: when the allocator it wraps
    /// does).
    var keepsItsClaims: Bool { get }
}

extension BuiltInStackAllocator {
    package var keepsItsClaims: Bool { true }
}

extension MmapStackAllocator: BuiltInStackAllocator {}
extension SlabStackAllocator: BuiltInStackAllocator {}
extension HugePageStackAllocator: BuiltInStackAllocator {}

extension PooledStackAllocator: BuiltInStackAllocator {
    package var keepsItsClaims: Bool { !inner.claimsNeedChecking }
}

extension StackAllocator {
    /// Whether its stacks must be probed before they are trusted (`Stack.checkClaims`): true for every
    /// allocator outside this package, and for a pool over one.
    package var claimsNeedChecking: Bool {
        !((self as? any BuiltInStackAllocator)?.keepsItsClaims ?? false)
    }
}

/// Stack allocators that keep counters.
public protocol StackStatsReporting {
    /// A snapshot of the counters.
    var stats: StackAllocatorStats { get }
}
