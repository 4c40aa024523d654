import SystemPackage

/// A failure of the stack subsystem: what failed, why, and the fix (the sysctl, the sysfs file, the mount,
/// the package).
///
/// An error is a value with a `code` to compare (`error.code == .resourceExhausted`), the `errno` of the
/// system call that failed, if one did, and a `message` and a `fix` for people. New codes can be added
/// without breaking code that switches over them: compare codes, or ask the classification properties
/// (`isShortage`, `isUsage`, `isUnsupported`). Bad input is an error too, never a trap.
///
/// An allocator of your own reports its failures with `StackError(code:message:fix:errno:)`, usually
/// with `.allocatorFailed`.
public struct StackError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure an error is. Compare codes, never messages.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// Bad input: a size, guard, page size, configuration field, request, placement, negative NUMA node
        /// or hugetlbfs path that cannot be served as given. Fix the calling code (`isUsage`).
        public static let invalidArgument = Code("invalidArgument")
        /// A guard smaller than the largest fixed frame of the loaded code: that frame could skip it. Make
        /// the guard at least the size `fix` names (`isUsage`).
        public static let guardSmallerThanFrame = Code("guardSmallerThanFrame")
        /// Too little of something: mappings (`vm.max_map_count`, or an allocator's reserve below it), huge
        /// pages (the pool, or a hugetlbfs mount's `size=`), address space for a thread, a pool's stacks.
        /// Retrying later, or with less, can succeed (`isShortage`).
        public static let resourceExhausted = Code("resourceExhausted")
        /// The kernel or the machine lacks a capability, or the NUMA node asked for (absent, offline, without
        /// memory); `fix` says how to get it (`isUnsupported`).
        public static let unsupported = Code("unsupported")
        /// A system call failed (mmap, the guard's madvise or mprotect, prefault, a probe, mbind, a signal
        /// handler or stack, pthread_create, the guard registry's memory): `errno` says why.
        public static let systemCallFailed = Code("systemCallFailed")
        /// A kernel interface file (procfs, sysfs) or an object file for the frame audit could not be read.
        public static let unreadable = Code("unreadable")
        /// The canary at a stack's usable bottom was overwritten: its fiber ran past its usable range.
        public static let canaryCorrupted = Code("canaryCorrupted")
        /// A placement check found present pages on NUMA nodes outside the ones asked for.
        public static let misplaced = Code("misplaced")
        /// An allocator outside this package failed, or handed out a stack that is smaller than requested,
        /// not writable, or without the guard it claims; its message says why.
        public static let allocatorFailed = Code("allocatorFailed")
    }

    /// The failure, with the values its message names.
    package let reason: Reason

    package init(_ reason: Reason) { self.reason = reason }

    /// An error of your own (an allocator outside this package): `message` says what failed, `fix` what to
    /// change; `errno` is the error number of the system call that failed, if one did.
    public init(code: Code = .allocatorFailed, message: String, fix: String = "", errno: Int32? = nil) {
        reason = .other(code: code, message: message, fix: fix, errno: errno.map(Errno.init(rawValue:)))
    }

    /// What kind of failure this is.
    public var code: Code {
        switch reason {
        case .other(let code, _, _, _): code
        case .invalidSize, .invalidGuard, .invalidConfiguration, .invalidPageSize, .numaPlacementEmpty, .notHugeTLBFSMount:
            .invalidArgument
        // A node this machine does not have, or cannot place memory on: valid on another machine.
        case .numaNodeOutOfRange(let node, _): node < 0 ? .invalidArgument : .unsupported
        case .numaNodeOffline, .numaNodeMemoryless: .unsupported
        case .guardSmallerThanFrame: .guardSmallerThanFrame
        case .mapCountExhausted, .mapCountReserveReached, .hugePagesExhausted, .hugeTLBFSMountFull,
            .hugeTLBCgroupLimitReached, .threadStackOverLimit:
            .resourceExhausted
        case .capabilityMissing: .unsupported
        case .mappingFailed, .guardInstallFailed, .prefaultFailed, .probeFailed, .numaBindFailed,
            .guardRegistrationFailed, .signalSetupFailed, .threadCreationFailed:
            .systemCallFailed
        case .systemFileUnreadable, .objectUnreadable: .unreadable
        case .canaryCorrupted: .canaryCorrupted
        case .numaPlacementWrong: .misplaced
        case .guardMissing, .stackNotWritable, .stackNotMapped, .guardReachesUsable, .stackSmallerThanRequested,
            .stackOverlapsLiveStack, .batchMiscounted:
            .allocatorFailed
        }
    }

    /// The error number of the failed system call (swift-system's `Errno`), if one failed.
    public var errno: Errno? {
        switch reason {
        case .other(_, _, _, let errno), .objectUnreadable(_, _, let errno): errno
        case .mappingFailed(let errno, _), .guardInstallFailed(let errno, _), .prefaultFailed(let errno, _, _),
            .probeFailed(let errno, _), .systemFileUnreadable(_, let errno), .numaBindFailed(let errno, _, _, _),
            .guardRegistrationFailed(let errno, _), .signalSetupFailed(let errno, _), .threadCreationFailed(let errno, _):
            errno
        default: nil
        }
    }

    /// `errno` as the C `Int32`, for code that does not use swift-system.
    public var errnoValue: Int32? { errno?.rawValue }

    /// What failed and why.
    public var message: String { split.message }

    /// What to change: the sysctl, the file, the mount option, the package; empty when there is nothing to do.
    public var fix: String { split.fix }

    public var description: String { reason.text }

    /// Too little of something: memory, mappings (`vm.max_map_count`), huge pages, a full pool. Retrying
    /// later, or with less, can succeed.
    public var isShortage: Bool {
        switch code {
        case .resourceExhausted: true
        case .systemCallFailed: errno == .noMemory || errno == .noSpace || errno == .resourceTemporarilyUnavailable
        default: false
        }
    }

    /// A usage error: an invalid size, configuration, placement or request, or a guard too small for the
    /// loaded code. Fix the calling code.
    public var isUsage: Bool { code == .invalidArgument || code == .guardSmallerThanFrame }

    /// This kernel or machine lacks what was asked for (a kernel feature, libnuma, huge pages support, a
    /// NUMA node).
    public var isUnsupported: Bool { code == .unsupported }

    private var split: (message: String, fix: String) {
        switch reason {
        case .other(_, let message, let fix, _): return (message, fix)
        case .capabilityMissing(let what, let fix): return ("\(what) is not available", fix)
        default:
            let text = reason.text
            guard let separator = text.firstRange(of: "; ") else { return (text, "") }
            return (String(text[..<separator.lowerBound]), String(text[separator.upperBound...]))
        }
    }

    /// "message; fix", or the message alone.
    static func join(_ message: String, _ fix: String) -> String {
        fix.isEmpty ? message : "\(message); \(fix)"
    }
}

extension StackError {
    /// The usable size is zero, negative, larger than `StackSizes.maximumUsableSize`, or overflows when rounded.
    package static func invalidSize(requested: Int, reason: String) -> StackError {
        StackError(.invalidSize(requested: requested, reason: reason))
    }

    /// The guard size is negative, larger than `StackSizes.maximumGuardSize`, or overflows when rounded.
    package static func invalidGuard(requested: Int, reason: String) -> StackError {
        StackError(.invalidGuard(requested: requested, reason: reason))
    }

    /// A configuration field holds a value outside what it accepts: `type` and `field` name it (as in
    /// `PooledStackAllocator.Configuration.idlePeriod`), `value` is what it held, `allowed` what it accepts.
    package static func invalidConfiguration(type: String, field: String, value: String, allowed: String) -> StackError {
        StackError(.invalidConfiguration(type: type, field: field, value: value, allowed: allowed))
    }

    /// A page size that is not a power of two of at least 4 KiB, or one this kernel does not offer.
    package static func invalidPageSize(requested: Int, reason: String) -> StackError {
        StackError(.invalidPageSize(requested: requested, reason: reason))
    }

    /// `mmap` failed for a mapping of `size` bytes.
    package static func mappingFailed(_ errno: Errno, size: Int) -> StackError {
        StackError(.mappingFailed(errno, size: size))
    }

    /// Installing the guard failed (`MADV_GUARD_INSTALL` or `mprotect(PROT_NONE)`).
    package static func guardInstallFailed(_ errno: Errno, mechanism: GuardMechanism) -> StackError {
        StackError(.guardInstallFailed(errno, mechanism: mechanism))
    }

    /// The process is at `vm.max_map_count`: no new mapping (or mapping split) is possible.
    package static func mapCountExhausted(limit: Int, current: Int) -> StackError {
        StackError(.mapCountExhausted(limit: limit, current: current))
    }

    /// An allocator with mprotect guards stopped before `vm.max_map_count`: the process has `current` of
    /// `limit` mappings, `reserve` of them are left to the rest of the process, and each new guarded stack
    /// costs two. `stacksRemaining` more would fit below the hard limit itself.
    package static func mapCountReserveReached(limit: Int, current: Int, reserve: Int, stacksRemaining: Int) -> StackError {
        StackError(.mapCountReserveReached(limit: limit, current: current, reserve: reserve, stacksRemaining: stacksRemaining))
    }

    /// Prefaulting the usable range failed; nothing was left half-mapped.
    package static func prefaultFailed(_ errno: Errno, strategy: PrefaultStrategy, address: UInt) -> StackError {
        StackError(.prefaultFailed(errno, strategy: strategy, address: address))
    }

    /// A probe syscall itself failed (not the EFAULT that means "inaccessible").
    package static func probeFailed(_ errno: Errno, what: String) -> StackError {
        StackError(.probeFailed(errno, what: what))
    }

    /// Reading a kernel interface file (procfs, sysfs) failed.
    package static func systemFileUnreadable(path: String, _ errno: Errno) -> StackError {
        StackError(.systemFileUnreadable(path: path, errno))
    }

    /// The kernel or the machine lacks a capability; `fix` says how to get it.
    package static func capabilityMissing(_ value0: String, fix: String) -> StackError {
        StackError(.capabilityMissing(value0, fix: fix))
    }

    /// A NUMA node id below 0 or above the highest node this kernel can have (`possible`, in sysfs).
    package static func numaNodeOutOfRange(node: Int, possible: [Int]) -> StackError {
        StackError(.numaNodeOutOfRange(node: node, possible: possible))
    }

    /// A NUMA node the kernel knows of but that is not online.
    package static func numaNodeOffline(node: Int, online: [Int]) -> StackError {
        StackError(.numaNodeOffline(node: node, online: online))
    }

    /// A NUMA node with CPUs but no memory: nothing can be placed on it. `nearest` is the closest node
    /// with memory (by `numa_distance`), if any.
    package static func numaNodeMemoryless(node: Int, nearest: Int?) -> StackError {
        StackError(.numaNodeMemoryless(node: node, nearest: nearest))
    }

    /// A NUMA placement that names no node (an empty interleave set).
    package static func numaPlacementEmpty(placement: String) -> StackError {
        StackError(.numaPlacementEmpty(placement: placement))
    }

    /// mbind(2) refused `placement` over `[address, address + size)`.
    package static func numaBindFailed(_ errno: Errno, placement: String, address: UInt, size: Int) -> StackError {
        StackError(.numaBindFailed(errno, placement: placement, address: address, size: size))
    }

    /// Present pages lie on nodes outside `expected`: `misplaced` of `present` pages, `pagesPerNode` as
    /// found by move_pages, the lowest misplaced page at `firstMisplaced`.
    package static func numaPlacementWrong(expected: [Int], misplaced: Int, present: Int, pagesPerNode: [Int: Int], firstMisplaced: UInt) -> StackError {
        StackError(.numaPlacementWrong(expected: expected, misplaced: misplaced, present: present, pagesPerNode: pagesPerNode, firstMisplaced: firstMisplaced))
    }

    /// The guard registry refused `stack`:
    /// ENOSPC (the registry is full), ENOMEM (no memory for its next chunk), EINVAL (not page-aligned).
    package static func guardRegistrationFailed(_ errno: Errno, stack: StackLayout) -> StackError {
        StackError(.guardRegistrationFailed(errno, stack: stack))
    }

    /// The canary at the usable bottom of `stack` was overwritten: the fiber ran past its usable range.
    package static func canaryCorrupted(stack: StackLayout, label: String?) -> StackError {
        StackError(.canaryCorrupted(stack: stack, label: label))
    }

    /// A stack's claimed guard is not there: a hardware guard page at `readablePage` can be read, or the
    /// canary was never written (`readablePage` nil).
    package static func guardMissing(stack: StackLayout, mechanism: GuardMechanism, readablePage: UInt?) -> StackError {
        StackError(.guardMissing(stack: stack, mechanism: mechanism, readablePage: readablePage))
    }

    /// A stack from an allocator outside this package cannot be written at `address`.
    package static func stackNotWritable(stack: StackLayout, address: UInt) -> StackError {
        StackError(.stackNotWritable(stack: stack, address: address))
    }

    /// A stack from an allocator outside this package is not mapped at `page`.
    package static func stackNotMapped(stack: StackLayout, page: UInt) -> StackError {
        StackError(.stackNotMapped(stack: stack, page: page))
    }

    /// A stack from an allocator outside this package cannot be read at its usable bottom.
    package static func guardReachesUsable(stack: StackLayout) -> StackError {
        StackError(.guardReachesUsable(stack: stack))
    }

    /// An allocator outside this package handed out a stack with fewer usable bytes than requested.
    package static func stackSmallerThanRequested(stack: StackLayout, requested: Int, allocator: String) -> StackError {
        StackError(.stackSmallerThanRequested(stack: stack, requested: requested, allocator: allocator))
    }

    /// An allocator handed another number of stacks than `count` to the closure of `allocate(_:count:into:)`.
    package static func batchMiscounted(allocator: String, count: Int, handed: Int) -> StackError {
        StackError(.batchMiscounted(allocator: allocator, count: count, handed: handed))
    }

    /// An allocator outside this package handed out a stack that overlaps the stack of a live fiber.
    package static func stackOverlapsLiveStack(stack: StackLayout, live: StackLayout, allocator: String) -> StackError {
        StackError(.stackOverlapsLiveStack(stack: stack, live: live, allocator: allocator))
    }

    /// Installing a signal handler or an alternate signal stack failed (`what` names the call).
    package static func signalSetupFailed(_ errno: Errno, what: String) -> StackError {
        StackError(.signalSetupFailed(errno, what: what))
    }

    /// A huge page pool had fewer free pages than a stack needs. `free` excludes pages already promised
    /// to other mappings; `controlFile` is the file to write to grow the pool (global or per node).
    package static func hugePagesExhausted(pageSize: Int, needed: Int, free: Int, node: Int?, controlFile: String) -> StackError {
        StackError(.hugePagesExhausted(pageSize: pageSize, needed: needed, free: free, node: node, controlFile: controlFile))
    }

    /// A hugetlbfs mount's `size=` limit left fewer free huge pages than a stack needs, whatever the pool
    /// holds: `limit` and `free` are the mount's (statfs(2)), in pages of `pageSize`.
    package static func hugeTLBFSMountFull(mount: String, pageSize: Int, limit: Int, free: Int, needed: Int) -> StackError {
        StackError(.hugeTLBFSMountFull(mount: mount, pageSize: pageSize, limit: limit, free: free, needed: needed))
    }

    /// A hugetlb cgroup limit (`limitFile`) left less room than the `needed` pages of `pageSize` a stack
    /// needs, whatever the pool holds; `limit` and `usage` in bytes.
    package static func hugeTLBCgroupLimitReached(limitFile: String, pageSize: Int, limit: Int, usage: Int, needed: Int)
        -> StackError
    {
        StackError(.hugeTLBCgroupLimitReached(limitFile: limitFile, pageSize: pageSize, limit: limit, usage: usage, needed: needed))
    }

    /// A path given as a hugetlbfs mount is not on a hugetlbfs file system (or does not exist).
    package static func notHugeTLBFSMount(path: String) -> StackError {
        StackError(.notHugeTLBFSMount(path: path))
    }

    /// `pthread_create` failed (a scheduler worker, a thread on a given stack); for EAGAIN, names the task
    /// limit reached, read now.
    package static func threadCreationFailed(_ errno: Errno) -> StackError {
        StackError(.threadCreationFailed(errno, taskLimit: errno == .resourceTemporarilyUnavailable ? TaskLimit.explanation() : nil))
    }

    /// The frame audit cannot read `path` (`reason` says why; `errno` when a syscall failed).
    package static func objectUnreadable(path: String, reason: String, errno: Errno?) -> StackError {
        StackError(.objectUnreadable(path: path, reason: reason, errno: errno))
    }

    /// A guard of `guardSize` bytes is smaller than the largest fixed frame of the loaded code.
    package static func guardSmallerThanFrame(
        guardSize: Int, function: String, object: String, frameBytes: Int, needed: Int
    ) -> StackError {
        StackError(.guardSmallerThanFrame(
            guardSize: guardSize, function: function, object: object, frameBytes: frameBytes, needed: needed))
    }

    /// A worker thread's `stackSize`-byte stack does not fit under `limit` (`ulimit -v` or `ulimit -d`).
    package static func threadStackOverLimit(_ limit: MappingLimit, stackSize: Int) -> StackError {
        StackError(.threadStackOverLimit(limit, stackSize: stackSize))
    }

    /// A pool is full: `what` says of what, `fix` how to make room.
    package static func poolExhausted(_ what: String, fix: String) -> StackError {
        StackError(.other(code: .resourceExhausted, message: what, fix: fix, errno: nil))
    }

    /// A usage error: `what` is wrong with the request, `fix` says what is allowed.
    package static func invalidRequest(_ what: String, fix: String) -> StackError {
        StackError(.other(code: .invalidArgument, message: what, fix: fix, errno: nil))
    }
}
