@_spi(Benchmarks) import OverflowDetection

/// What a stack is, as plain data: where it lies, what guards it, where its pages live.
public struct StackDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// Addresses and sizes.
    public let layout: StackLayout
    /// What protects `layout.guardRange` (or the bottom of the usable range, for `.canary`).
    public let guardMechanism: GuardMechanism
    /// The NUMA node the usable range is bound to, if any.
    public let node: Int?
    /// Allocator-private bookkeeping (the built-in allocators keep a serial here that their release
    /// checks); opaque to everyone else.
    public let tag: UInt

    /// Describes a stack. Allocators outside this package use this to build the `Stack`s they return.
    public init(layout: StackLayout, guardMechanism: GuardMechanism, node: Int? = nil, tag: UInt = 0) {
        self.layout = layout
        self.guardMechanism = guardMechanism
        self.node = node
        self.tag = tag
    }

    public var description: String {
        "\(layout), guard \(guardMechanism)" + (node.map { ", node \($0)" } ?? "")
    }
}

/// One fiber stack, owned: it goes back to its allocator when dropped or released.
///
/// `~Copyable` makes a leak impossible to forget and a stack impossible to release twice by copying
/// it: the `deinit` gives the memory back (the model is swift-system's `IORing`, which unmaps in
/// `deinit`). `init(descriptor:allocator:)` can still make a second `Stack` for the same memory; the
/// built-in allocators refuse the second release (see `StackAllocator`).
///
/// A stack keeps its allocator alive. Most stacks hold a strong reference to it; a `PooledStackAllocator`'s
/// stacks hold none (a retain and a release are two atomic read-modify-writes, most of a pooled acquire
/// and release): the pool keeps itself alive while any of its stacks is out, even when it is dropped.
public struct Stack: ~Copyable, Sendable {
    /// Where the stack lies and what guards it.
    public let descriptor: StackDescriptor
    /// The allocator, held strongly; `.none` for a pooled stack.
    @usableFromInline let retained: Retained
    /// The pool of a pooled stack, which keeps itself alive while the stack is out; nil otherwise.
    @usableFromInline let pool: Unmanaged<PoolCore>?
    /// The guard's entry in `GuardRegistry` that this stack holds (made by `Stack.guarded`), or 0. Ended
    /// when the stack goes, before its allocator unmaps it. Held here, not by the allocator, so that
    /// only the owner of the memory ends it: a second `Stack` for the same memory holds none.
    @usableFromInline let guardRegistration: UInt64

    /// A strong reference or none. Noncopyable, so `deinit` borrows the payload (no retain) and destroys it
    /// with a plain release (an `Optional` of an existential is destroyed through its type metadata).
    @usableFromInline enum Retained: ~Copyable, Sendable {
        case none
        case some(any StackAllocator)
    }

    /// The allocator that made it; kept alive by the stack. For a pooled stack, a handle on its pool.
    package var allocator: any StackAllocator {
        switch retained {
        case .some(let allocator): allocator
        case .none: PooledStackAllocator(core: pool.unsafelyUnwrapped.takeUnretainedValue())
        }
    }

    /// Wraps memory that `allocator` made. For allocator implementers only, from `allocate`: any other
    /// `Stack` for the same memory is a second owner (the built-in allocators refuse its release if the
    /// first already happened, but a copy released first frees the memory under the original; a pool
    /// refuses every release of a `Stack` made this way, since its own stacks are made otherwise).
    /// (Inlinable: built in place in the caller's frame, no copy of the result.)
    @inlinable
    public init(descriptor: StackDescriptor, allocator: any StackAllocator) {
        self.descriptor = descriptor
        retained = .some(allocator)
        pool = nil
        guardRegistration = 0
    }

    /// A stack holding the registration of its guard (see `Stack.guarded`).
    init(descriptor: StackDescriptor, allocator: any StackAllocator, guardRegistration: UInt64) {
        self.descriptor = descriptor
        retained = .some(allocator)
        pool = nil
        self.guardRegistration = guardRegistration
    }

    /// A stack of `pool`, which counts it as out until it comes back (see `PoolCore`).
    @inline(__always)
    init(descriptor: StackDescriptor, pool: PoolCore) {
        self.descriptor = descriptor
        retained = .none
        self.pool = Unmanaged.passUnretained(pool)
        guardRegistration = 0
    }

    /// One past the highest usable address: the initial stack pointer.
    public var top: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: descriptor.layout.top)! }
    /// Lowest usable address.
    package var usableBottom: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: descriptor.layout.usableBottom)!
    }
    /// Usable bytes.
    package var usableSize: Int { descriptor.layout.sizes.usableSize }
    /// The guard's address range (empty when unguarded).
    package var guardRange: Range<UInt> { descriptor.layout.guardRange }
    /// Page size of the usable range.
    package var pageSize: Int { descriptor.layout.pageSize }
    /// What protects the bottom.
    package var guardMechanism: GuardMechanism { descriptor.guardMechanism }
    /// NUMA node, if bound.
    package var node: Int? { descriptor.node }

    /// Gives the stack back to its allocator now (the same as dropping it, but explicit).
    public consuming func release() {}

    deinit {
        if let pool {
            pool._withUnsafeGuaranteedRef { $0.takeBack(tag: descriptor.tag, mechanism: descriptor.guardMechanism) }
        } else if case .some(let allocator) = retained {
            if guardRegistration != 0 { GuardRegistry.end(guardRegistration, at: descriptor.layout.usableBottom) }
            allocator.release(descriptor, token: StackReleaseToken())
        }
    }
}
