import CStackSupport
import SystemPackage

extension StackError {
        /// What failed, with the values its message names: the structured form of a built-in error, for this
        /// package and its tests. Users read `code`, `errno`, `message` and `fix`.
    package enum Reason: Sendable, Hashable {
        /// The usable size is zero, negative, larger than `StackSizes.maximumUsableSize`, or overflows when rounded.
        case invalidSize(requested: Int, reason: String)
        /// The guard size is negative, larger than `StackSizes.maximumGuardSize`, or overflows when rounded.
        case invalidGuard(requested: Int, reason: String)
        /// A configuration field holds a value outside what it accepts: `type` and `field` name it (as in
        /// `PooledStackAllocator.Configuration.idlePeriod`), `value` is what it held, `allowed` what it accepts.
        case invalidConfiguration(type: String, field: String, value: String, allowed: String)
        /// A page size that is not a power of two of at least 4 KiB, or one this kernel does not offer.
        case invalidPageSize(requested: Int, reason: String)
        /// `mmap` failed for a mapping of `size` bytes, or `mprotect` making `size` bytes of reserved address
        /// space writable.
        case mappingFailed(Errno, size: Int)
        /// Installing the guard failed (`MADV_GUARD_INSTALL` or `mprotect(PROT_NONE)`).
        case guardInstallFailed(Errno, mechanism: GuardMechanism)
        /// The process is at `vm.max_map_count`: no new mapping (or mapping split) is possible.
        case mapCountExhausted(limit: Int, current: Int)
        /// An allocator with mprotect guards stopped before `vm.max_map_count`: the process has `current` of
        /// `limit` mappings, `reserve` of them are left to the rest of the process, and each new guarded stack
        /// costs two. `stacksRemaining` more would fit below the hard limit itself.
        case mapCountReserveReached(limit: Int, current: Int, reserve: Int, stacksRemaining: Int)
        /// Prefaulting the usable range failed; nothing was left half-mapped.
        case prefaultFailed(Errno, strategy: PrefaultStrategy, address: UInt)
        /// A probe syscall itself failed (not the EFAULT that means "inaccessible").
        case probeFailed(Errno, what: String)
        /// Reading a kernel interface file (procfs, sysfs) failed.
        case systemFileUnreadable(path: String, Errno)
        /// The kernel or the machine lacks a capability; `fix` says how to get it.
        case capabilityMissing(String, fix: String)
        /// A NUMA node id below 0 or above the highest node this kernel can have (`possible`, in sysfs).
        case numaNodeOutOfRange(node: Int, possible: [Int])
        /// A NUMA node the kernel knows of but that is not online.
        case numaNodeOffline(node: Int, online: [Int])
        /// A NUMA node with CPUs but no memory: nothing can be placed on it. `nearest` is the closest node
        /// with memory (by `numa_distance`), if any.
        case numaNodeMemoryless(node: Int, nearest: Int?)
        /// A NUMA placement that names no node (an empty interleave set).
        case numaPlacementEmpty(placement: String)
        /// mbind(2) refused `placement` over `[address, address + size)`.
        case numaBindFailed(Errno, placement: String, address: UInt, size: Int)
        /// Present pages lie on nodes outside `expected`: `misplaced` of `present` pages, `pagesPerNode` as
        /// found by move_pages, the lowest misplaced page at `firstMisplaced`.
        case numaPlacementWrong(expected: [Int], misplaced: Int, present: Int, pagesPerNode: [Int: Int], firstMisplaced: UInt)
        /// `GuardRegistry.register` refused `stack`: ENOSPC (the registry is full), ENOMEM (no memory for its
        /// next chunk), EINVAL (not page-aligned).
        case guardRegistrationFailed(Errno, stack: StackLayout)
        /// The canary at the usable bottom of `stack` was overwritten: the fiber ran past its usable range.
        case canaryCorrupted(stack: StackLayout, label: String?)
        /// A stack from an allocator outside this package claims a guard that is not there: a page of its
        /// hardware guard (`.lightweight`, `.protNone`) at `readablePage` can be read, or its canary was never
        /// written (`readablePage` nil).
        case guardMissing(stack: StackLayout, mechanism: GuardMechanism, readablePage: UInt?)
        /// A stack from an allocator outside this package cannot be written at `address` (its top byte).
        case stackNotWritable(stack: StackLayout, address: UInt)
        /// A stack from an allocator outside this package is not mapped at `page`: in its guard (which must
        /// be reserved, not left as a hole) or in its usable range.
        case stackNotMapped(stack: StackLayout, page: UInt)
        /// A stack from an allocator outside this package cannot be read at its usable bottom: its guard
        /// reaches into the usable range.
        case guardReachesUsable(stack: StackLayout)
        /// `allocator`, outside this package, handed out `stack` with fewer usable bytes than the
        /// `requested` ones.
        case stackSmallerThanRequested(stack: StackLayout, requested: Int, allocator: String)
        /// `allocator`, outside this package, handed out `stack`, whose memory (guard or usable) overlaps
        /// `live`, the stack of a fiber that still runs on it.
        case stackOverlapsLiveStack(stack: StackLayout, live: StackLayout, allocator: String)
        /// `allocator` handed `handed` stacks to the closure of `allocate(_:count:into:)` for `count`.
        case batchMiscounted(allocator: String, count: Int, handed: Int)
        /// Installing a signal handler or an alternate signal stack failed (`what` names the call).
        case signalSetupFailed(Errno, what: String)
        /// A huge page pool had fewer free pages than a stack needs. `free` excludes pages already promised
        /// to other mappings; `controlFile` is the file to write to grow the pool (global or per node).
        case hugePagesExhausted(pageSize: Int, needed: Int, free: Int, node: Int?, controlFile: String)
        /// A hugetlbfs mount's `size=` limit left fewer free huge pages than a stack needs, whatever the pool
        /// holds: `limit` and `free` are the mount's (statfs(2)), in pages of `pageSize`.
        case hugeTLBFSMountFull(mount: String, pageSize: Int, limit: Int, free: Int, needed: Int)
        /// A hugetlb cgroup limit (`limitFile`: faults or reservations, v2 or v1) left less room than the
        /// `needed` pages of `pageSize` a stack needs, whatever the pool holds; `limit` and `usage` in bytes.
        case hugeTLBCgroupLimitReached(limitFile: String, pageSize: Int, limit: Int, usage: Int, needed: Int)
        /// A path given as a hugetlbfs mount is not on a hugetlbfs file system (or does not exist).
        case notHugeTLBFSMount(path: String)
        /// `pthread_create` failed (a scheduler worker, a thread on a given stack); for EAGAIN, `taskLimit`
        /// names the limit reached (`TaskLimit.explanation()`, read when it failed).
        case threadCreationFailed(Errno, taskLimit: String?)
        /// The frame audit cannot read `path` as a 64-bit little-endian ELF object for x86_64 or aarch64
        /// (`reason` says why; `errno` is set when a syscall failed).
        case objectUnreadable(path: String, reason: String, errno: Errno?)
        /// A guard of `guardSize` bytes is smaller than the `frameBytes`-byte frame of `function` in `object`,
        /// the largest fixed frame of the code loaded in the process: that frame could skip the guard.
        case guardSmallerThanFrame(guardSize: Int, function: String, object: String, frameBytes: Int, needed: Int)
        /// `pthread_create` failed for a scheduler worker (EAGAIN) because its `stackSize`-byte stack does not
        /// fit under `limit` (`ulimit -v` or `ulimit -d`).
        case threadStackOverLimit(MappingLimit, stackSize: Int)
        /// An error made outside this package (`StackError.init(code:message:fix:errno:)`).
        case other(code: Code, message: String, fix: String, errno: Errno?)
    }
}

extension StackError.Reason {
    /// The whole text: what failed, why, and the fix.
    var text: String {
        switch self {
        case .other(_, let message, let fix, let errno):
            return StackError.join(message + (errno.map { ": \($0) (\($0.rawValue))" } ?? ""), fix)
        case .invalidSize(let requested, let reason):
            return "invalid stack size \(requested): \(reason)"
        case .invalidGuard(let requested, let reason):
            return "invalid guard size \(requested): \(reason)"
        case .invalidConfiguration(let type, let field, let value, let allowed):
            return "invalid \(type).\(field) \(value): it must be \(allowed)"
        case .invalidPageSize(let requested, let reason):
            return "invalid page size \(requested): \(reason)"
        case .mappingFailed(let errno, let size):
            let fix =
                switch errno {
                case .noMemory where Overcommit.isStrict:
                    "vm.overcommit_memory is 2, which charges every writable private mapping, touched or not, against "
                        + "CommitLimit (/proc/meminfo): raise vm.overcommit_ratio or vm.overcommit_kbytes, or set "
                        + "vm.overcommit_memory=0"
                case .noMemory: "check memory limits (ulimit -v, ulimit -d, cgroup memory.max) and vm.overcommit_memory"
                case .resourceTemporarilyUnavailable: "locked memory is over its limit: raise `ulimit -l`"
                case .notPermitted: "a seccomp profile or a security module forbids the mapping"
                case .permissionDenied: "the file's open mode or its mount's options do not allow this mapping"
                case .invalidArgument: "the kernel refused the size, alignment or flags; see mmap(2)"
                default: "see mmap(2)"
                }
            return "mapping \(size) bytes failed: \(errno) (\(errno.rawValue)); \(fix)"
        case .guardInstallFailed(let errno, let mechanism):
            let fix =
                switch (mechanism, errno) {
                case (.lightweight, .invalidArgument):
                    "MADV_GUARD_INSTALL needs Linux >= 6.13 and private anonymous memory (hugetlb, file-backed "
                        + "and locked mappings refuse it); use GuardMode.protNone there"
                case (_, .noMemory):
                    "the kernel is out of memory for page tables, or the process is at vm.max_map_count "
                        + "(an mprotect guard splits a mapping); check memory limits, or raise vm.max_map_count"
                default: "see \(mechanism == .lightweight ? "madvise(2)" : "mprotect(2)")"
                }
            return "installing the \(mechanism) guard failed: \(errno) (\(errno.rawValue)); \(fix)"
        case .mapCountExhausted(let limit, let current):
            return "the process has \(current) of vm.max_map_count=\(limit) mappings; raise it with "
                + "`sysctl -w vm.max_map_count=\(max(limit * 2, 262_144))` (persist in /etc/sysctl.d/), "
                + "or, for small-page stacks, use lightweight guards (Linux >= 6.13), which add no mapping"
        case .mapCountReserveReached(let limit, let current, let reserve, let stacksRemaining):
            return "mprotect guards cost two mappings per stack: the process has \(current) of vm.max_map_count=\(limit) "
                + "mappings and the last \(reserve) are kept for the rest of the process (the map count reserve, at most "
                + "a quarter of the limit), so no new guarded stack is carved; the \(max(limit - current, 0)) mappings "
                + "left below the limit would hold \(stacksRemaining) more. Release stacks (their slots are reused without "
                + "new mappings), lower SlabStackAllocator.Configuration.mapCountReserve if the rest of the process needs "
                + "fewer mappings, raise the limit with `sysctl -w vm.max_map_count=\(max(limit * 2, 262_144))` (persist "
                + "in /etc/sysctl.d/), or use lightweight guards (MADV_GUARD_INSTALL, Linux >= 6.13), which add no mapping"
        case .prefaultFailed(let errno, let strategy, let address):
            let fix =
                switch errno {
                case .noMemory: "the memory could not be had: check memory limits (ulimit -v, cgroup memory.max)"
                case .invalidArgument:
                    "MADV_POPULATE_WRITE needs Linux >= 5.14 and a writable mapping; use PrefaultStrategy.touch on older kernels"
                case .badAddress: "a page could not be faulted in (a guard inside the range, or a failed fault)"
                default: "see madvise(2)"
                }
            return "prefault (\(strategy)) failed at 0x\(String(address, radix: 16)): \(errno) (\(errno.rawValue)); \(fix)"
        case .probeFailed(let errno, let what):
            let fix =
                switch errno {
                case .notPermitted, .permissionDenied, .noFunction:
                    "a seccomp profile refuses the probe's system call (mincore(2) for residency, process_vm_readv(2) "
                        + "for access, move_pages(2) for placement): allow process_vm_readv, mincore and move_pages"
                case .noMemory: "part of the range is not mapped"
                default: "see process_vm_readv(2), mincore(2) and move_pages(2)"
                }
            return "probe of \(what) failed: \(errno) (\(errno.rawValue)); \(fix)"
        case .systemFileUnreadable(let path, let errno):
            let fix =
                switch errno {
                case .noSuchFileOrDirectory:
                    "the file is missing: procfs or sysfs is not mounted, or this kernel lacks the feature it describes"
                case .permissionDenied, .notPermitted: "this user may not read it (a sandbox or a container's mask)"
                default: "see the kernel's documentation of \(path)"
                }
            return "cannot read \(path): \(errno) (\(errno.rawValue)); \(fix)"
        case .capabilityMissing(let what, let fix):
            return "\(what) is not available: \(fix)"
        case .numaNodeOutOfRange(let node, let possible):
            return "NUMA node \(node) does not exist: this kernel's nodes are \(nodeList(possible)) "
                + "(/sys/devices/system/node/possible); list them with `numactl -H` or `fiberstacks doctor`"
        case .numaNodeOffline(let node, let online):
            return "NUMA node \(node) is offline: use an online node (\(nodeList(online)), "
                + "/sys/devices/system/node/online) or bring its memory online (/sys/devices/system/memory/memory*/online)"
        case .numaNodeMemoryless(let node, let nearest):
            return "NUMA node \(node) has no memory (it is not in /sys/devices/system/node/has_memory), so no page can "
                + "be placed on it: "
                + (nearest.map { "bind to node \($0), the nearest node with memory" } ?? "no node has memory")
                + " (its CPUs allocate from there by default)"
        case .numaPlacementEmpty(let placement):
            return "NUMA placement \(placement) names no node: give at least one node with memory"
        case .numaBindFailed(let errno, let placement, let address, let size):
            let fix: String
            switch errno {
            case .ioError: fix = "pages already present lie on other nodes and the placement is strict; use "
                + "existingPages .move to migrate them, or place the range before its first touch"
            case .invalidArgument: fix = "the kernel refused the node set (offline or memoryless node, or a range "
                + "not aligned to its page size); check /sys/devices/system/node/has_memory"
            case .noFunction: fix = "this kernel has no NUMA support: it needs CONFIG_NUMA=y"
            case .permissionDenied, .notPermitted: fix = "a seccomp profile or a cpuset forbids it (allow mbind; "
                + "check the cgroup's cpuset.mems)"
            case .noMemory: fix = "the kernel is out of memory for the policy; free memory"
            case .badAddress: fix = "part of the range is not mapped"
            default: fix = "see mbind(2)"
            }
            return "mbind(\(placement)) of \(size) bytes at 0x\(String(address, radix: 16)) failed: "
                + "\(errno) (\(errno.rawValue)); \(fix)"
        case .numaPlacementWrong(let expected, let misplaced, let present, let pagesPerNode, let firstMisplaced):
            let found = pagesPerNode.sorted { $0.key < $1.key }.map { "node \($0.key): \($0.value)" }.joined(separator: ", ")
            return "\(misplaced) of \(present) present pages are not on node(s) \(nodeList(expected)) (found \(found); "
                + "first at 0x\(String(firstMisplaced, radix: 16))): bind before the first touch (a preferred "
                + "placement spills when its node is full), or rebind with existingPages .move"
        case .guardRegistrationFailed(let errno, let stack):
            let fix: String
            switch errno {
            case .noSpace:
                fix = "the registry holds a stack for every one of its 4,294,963,200 slots; release stacks first"
            case .noMemory:
                fix = "mapping the registry's next segment failed; check memory limits (ulimit -v, cgroup "
                    + "memory.max) and the process's map count against vm.max_map_count"
            default:
                fix = "the usable bottom must be non-zero and page-aligned, below the top"
            }
            return "registering the guard of \(stack) failed: \(errno) (\(errno.rawValue)); \(fix)"
        case .canaryCorrupted(let stack, let label):
            return "the canary at the usable bottom of \(label.map { "fiber \"\($0)\" " } ?? "")\(stack) was "
                + "overwritten: the fiber used more than its \(stack.sizes.usableSize) usable bytes (or something wrote "
                + "over it); raise the stack size (StackRequest.usableSize), or give the stack a hardware guard "
                + "(StackRequest.guardSize > 0) so an overflow traps where it happens"
        case .guardMissing(let stack, let mechanism, let readablePage):
            guard let readablePage else {
                return "the \(stack) claims a canary at its usable bottom, but none is written there: an overflow would "
                    + "go unnoticed; make the stack with Stack.guarded(_:request:mechanism: .canary, ...), which writes "
                    + "it, or describe it with GuardMechanism.none"
            }
            return "the \(stack) claims a \(mechanism) guard over [0x\(String(stack.guardRange.lowerBound, radix: 16)), "
                + "0x\(String(stack.guardRange.upperBound, radix: 16))), but its page at 0x\(String(readablePage, radix: 16)) "
                + "can be read: an overflow would run through it without a fault; install the guard before "
                + "returning the stack (Stack.guarded does, and checks the mprotect or madvise result), or describe "
                + "it with GuardMechanism.none"
        case .stackNotWritable(let stack, let address):
            return "the \(stack) cannot be written at 0x\(String(address, radix: 16)), its top byte: a fiber's first "
                + "frame goes there; map the stack readable and writable (PROT_READ | PROT_WRITE), private and anonymous"
        case .stackNotMapped(let stack, let page):
            let address = "0x\(String(page, radix: 16))"
            guard page < stack.usableBottom else {
                return "the \(stack) is not mapped at \(address), in its usable range: map all its usable bytes, "
                    + "readable and writable"
            }
            return "the \(stack) is not mapped at \(address), in its guard: another mapping can take that hole, and an "
                + "overflow would then write into it without a fault; keep the guard mapped and make it inaccessible "
                + "(mprotect PROT_NONE, or MADV_GUARD_INSTALL), as Stack.guarded does"
        case .guardReachesUsable(let stack):
            return "the \(stack) cannot be read at 0x\(String(stack.usableBottom, radix: 16)), its usable bottom: its "
                + "guard reaches into the usable range, so fibers have fewer usable bytes than it claims; make exactly "
                + "StackSizes.guardSize bytes from the base inaccessible, as Stack.guarded does"
        case .stackSmallerThanRequested(let stack, let requested, let allocator):
            return "\(allocator) handed out the \(stack) for a request of \(requested) usable bytes: its fibers would "
                + "overflow sooner than configured; hand out at least StackRequest.usableSize usable bytes (StackSizes "
                + "rounds it up to whole pages), or give the allocator's one size in fixedSizes"
        case .stackOverlapsLiveStack(let stack, let live, let allocator):
            func memory(_ layout: StackLayout) -> String {
                "[0x\(String(layout.base, radix: 16)), 0x\(String(layout.top, radix: 16)))"
            }
            return "\(allocator) handed out the \(stack), which with its guard spans \(memory(stack)) and overlaps "
                + "\(memory(live)), the \(live) of a live fiber with its guard: two fibers would run on the same memory "
                + "(the refused stack is kept, never released, since releasing it could free the live fiber's memory); "
                + "hand out each range (guard and usable bytes) to one stack at a time, and again only once "
                + "release(_:token:) has taken it back"
        case .batchMiscounted(let allocator, let count, let handed):
            return "\(allocator) handed \(handed) stacks to the closure of allocate(_:count:into:) for \(count): a fiber "
                + "pool would start with another number of fibers than configured; call the closure exactly count "
                + "times, or throw the error that stops the batch"
        case .signalSetupFailed(let errno, let what):
            let fix =
                switch errno {
                case .noMemory: "no memory for the alternate signal stack; check memory limits (ulimit -v, cgroup memory.max)"
                case .notPermitted:
                    "the thread is running on its alternate signal stack (change it outside a signal handler), or a "
                        + "seccomp profile forbids sigaltstack (allow it)"
                case .resourceTemporarilyUnavailable: "the process is out of pthread keys (PTHREAD_KEYS_MAX)"
                case .invalidArgument: "the kernel refused the arguments (a stack below MINSIGSTKSZ, or a bad signal)"
                default: "a seccomp profile or a sandbox may forbid it; allow sigaction, sigaltstack and mmap"
                }
            return "\(what) failed: \(errno) (\(errno.rawValue)); \(fix)"
        case .hugePagesExhausted(let pageSize, let needed, let free, let node, let controlFile):
            let pool = "\(node.map { "node \($0)'s" } ?? "the") \(formatByteCount(pageSize)) huge page pool"
            guard free < needed else {
                return "\(pool) has \(free) free pages, \(needed) needed, yet the kernel refused them: a hugetlbfs "
                    + "mount's size= limit or a hugetlb cgroup limit (hugetlb.\(formatSizeOption(pageSize))B.max, or v1's .limit_in_bytes) may be "
                    + "reached, or another process took the pages meanwhile; raise the limit that was reached, or ask "
                    + "for HugePageRequest.ExhaustionPolicy.fallback"
            }
            return "\(pool) has \(free) free pages, \(needed) needed: "
                + "add at least \(needed - free) by writing a larger page count to \(controlFile) (as root), "
                + "or ask for HugePageRequest.ExhaustionPolicy.fallback"
        case .hugeTLBFSMountFull(let mount, let pageSize, let limit, let free, let needed):
            let options = "pagesize=\(formatSizeOption(pageSize)),size=\(formatSizeOption(pageSize * (limit - free + needed)))"
            return "the hugetlbfs mount \(mount) is limited to \(limit) \(formatByteCount(pageSize)) pages by its size= "
                + "option and has \(free) free, \(needed) needed: mount it again "
                + "with a larger size (as root, once nothing uses it: `umount \(mount) && mount -t hugetlbfs -o \(options) "
                + "none \(mount)`; `mount -o remount` keeps the old size), pass another hugetlbfs mount with room, or use "
                + "anonymous huge pages (HugePageRequest.Backing.anonymous, MAP_HUGETLB), which no mount limits"
        case .hugeTLBCgroupLimitReached(let file, let pageSize, let limit, let usage, let needed):
            return "the hugetlb cgroup limit \(file) allows \(limit) B of \(formatByteCount(pageSize)) huge pages, "
                + "\(usage) B in use, \(needed) \(needed == 1 ? "page" : "pages") needed: raise it (as root, write a "
                + "larger byte count to \(file); in Kubernetes, request hugepages-\(formatSizeOption(pageSize))i for the "
                + "container), or ask for HugePageRequest.ExhaustionPolicy.fallback"
        case .notHugeTLBFSMount(let path):
            return "\(path) is not a hugetlbfs mount: mount one (as root) with "
                + "`mount -t hugetlbfs -o pagesize=2M none \(path)` (pagesize= picks the huge page size), "
                + "or pass mount: nil to use the one libhugetlbfs finds"
        case .objectUnreadable(let path, let reason, let errno):
            return "cannot audit the stack frames of \(path): \(reason)"
                + (errno.map { ": \($0) (\($0.rawValue))" } ?? "")
                + "; give the path of an executable or shared library (64-bit little-endian ELF, x86_64 or aarch64) "
                + "that this user can read"
        case .guardSmallerThanFrame(let guardSize, let function, let object, let frameBytes, let needed):
            let opening = guardSize == 0
                ? "a stack without a guard that faults (a canary or none) has nothing to stop"
                : "a guard of \(guardSize) bytes is smaller than"
            return "\(opening) the \(frameBytes)-byte stack frame of \(function) in \(object): Swift "
                + "emits no stack probes, so that frame can skip the guard without touching it and write into the "
                + "stack below; use a guard of at least \(needed) bytes (StackRequest.guardSize, "
                + "FiberConfig.guardSize), or set FiberConfig.allowGuardSmallerThanLargestFrame to accept the risk "
                + "(`fiberstacks frames` lists the largest frames)"
        case .threadStackOverLimit(let limit, let stackSize):
            return "creating a worker thread failed: its \(stackSize)-byte stack does not fit under the "
                + "\(limit.kind == .addressSpace ? "address-space" : "data") limit \(limit.resource) (\(limit.inUse) of "
                + "\(limit.limit) bytes in use); raise `\(limit.command)`, lower the thread stack size (`ulimit -s`), or "
                + "lower FiberConfig.workerCount or the fiber stack sizes"
        case .threadCreationFailed(let errno, let taskLimit):
            let fix = taskLimit.map { "\($0), or lower FiberConfig.workerCount" } ?? "see pthread_create(3)"
            return "creating a thread failed: \(errno) (\(errno.rawValue)); \(fix)"
        }
    }
}

/// "0,1,3" for a list of node ids, or "none".
private func nodeList(_ nodes: [Int]) -> String {
    nodes.isEmpty ? "none" : nodes.map(String.init).joined(separator: ",")
}
