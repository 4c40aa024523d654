import CStackSupport
@_spi(Benchmarks) import GuardPages
import Logging

/// One private anonymous mapping per stack, guard at the low end.
///
/// Each stack is `mmap(guard + usable, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_STACK)`
/// (never PROT_EXEC; MAP_STACK keeps transparent huge pages off small stacks since Linux 6.7), then the
/// guard: `MADV_GUARD_INSTALL` where the kernel has it (no extra VMA, so adjacent stacks merge into
/// few VMAs), `mprotect(PROT_NONE)` otherwise (two VMAs per stack: the `vm.max_map_count` ceiling).
/// With `StackRequest.placement`, the whole mapping is bound with mbind before the guard and prefault
/// (docs/numa.md). Each guarded stack is in the guard registry while it lives, so `OverflowHandler` can name it.
/// Release is one `munmap`, for a stack the allocator's own record holds as live (`StackDescriptor.tag`
/// carries its serial); any other release is refused.
public final class MmapStackAllocator: StackAllocator, StackStatsReporting {
    /// The guard mechanism this allocator installs (resolved from its `GuardMode` at init).
    package let guardMechanism: GuardMechanism
    private let installer: GuardInstaller
    private let logger: Logger
    private let recorder = StackStatsRecorder()
    private let live = LiveStacks<Void>()

    /// An allocator whose guards follow `guardMode`. Throws `.unsupported` when `.lightweight`
    /// is forced on a kernel without `MADV_GUARD_INSTALL`.
    public init(guardMode: GuardMode = .automatic, logger: Logger = Logger(label: "fiberstacks.mmap"))
        throws(StackError)
    {
        installer = try GuardInstaller(mode: guardMode)
        guardMechanism = installer.mechanism
        self.logger = logger
        logger.debug("mmap stack allocator ready", metadata: ["guard": "\(installer.mechanism)"])
    }

    public var stats: StackAllocatorStats { recorder.snapshot }

    public func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        let sizes = try accept(request)
        let base = try map(size: sizes.total)
        do throws(StackError) {
            return try finish(at: base, sizes: sizes, request: request)
        } catch {
            unmap(base, size: sizes.total)
            throw error
        }
    }

    /// `count` stacks cut from one mapping: one mmap instead of `count`, and one anonymous VMA that each
    /// guard joins, where separate mappings each take the process's mmap lock for writing and each get a
    /// VMA of their own to prepare (the scheduler's startup with two workers filling 16 stacks of 512 KiB
    /// each: docs/scheduler.md). Each stack is still released, and unmapped, on its own.
    public func allocate(
        _ request: StackRequest, count: Int, into body: (consuming Stack) throws(StackError) -> Void
    ) throws(StackError) {
        guard count > 0 else { return }
        let sizes = try accept(request)
        let (bytes, overflow) = sizes.total.multipliedReportingOverflow(by: count)
        guard !overflow else {
            throw .invalidRequest("\(count) stacks of \(sizes.total) bytes overflow the address space", fix: "ask for fewer")
        }
        let base = try map(size: bytes)
        var made = 0
        do throws(StackError) {
            while made < count {
                let stack = try finish(at: base + UInt(made * sizes.total), sizes: sizes, request: request)
                made += 1
                try body(stack)
            }
        } catch {
            // The stacks handed to `body` are its own (each unmaps its range when released); the rest goes now.
            unmap(base + UInt(made * sizes.total), size: (count - made) * sizes.total)
            throw error
        }
    }

    /// The sizes of a stack for `request`, which must be for small pages.
    private func accept(_ request: StackRequest) throws(StackError) -> StackSizes {
        guard request.pages == .small else {
            throw .invalidRequest("huge pages in MmapStackAllocator", fix: "use HugePageStackAllocator")
        }
        return try StackSizes(usableSize: request.usableSize, guardSize: request.guardSize)
    }

    /// A private anonymous read-write mapping of `size` bytes (the stacks' flags), or the error that names
    /// why not (`vm.max_map_count` when the kernel's ENOMEM means it).
    private func map(size: Int) throws(StackError) -> UInt {
        switch Syscall.map(size: size, flags: StackLayout.mappingFlags) {
        case .success(let address): return address
        case .failure(let errno):
            throw errno == .noMemory ? MapCount.exhaustedError() ?? .mappingFailed(errno, size: size)
                : .mappingFailed(errno, size: size)
        }
    }

    /// The stack at `base` (mapped by the caller, who unmaps it if this throws): recorded, then bound,
    /// guarded, prefaulted and registered by `Stack.guarded`.
    private func finish(at base: UInt, sizes: StackSizes, request: StackRequest) throws(StackError) -> Stack {
        let layout = try StackLayout(base: base, sizes: sizes)
        // The record first, for the serial in the tag; taken back if the stack cannot be finished.
        let recorded = live.add(
            StackDescriptor(
                layout: layout, guardMechanism: sizes.guardSize == 0 ? .none : installer.mechanism,
                node: request.placement?.homeNode))
        do throws(StackError) {
            // Binds before the guard: MADV_GUARD_INSTALL gives the VMA an anon_vma, after which a bound
            // stack could no longer merge with its bound neighbour (one VMA per stack instead of a few).
            let stack = try Stack.guarded(
                layout, request: request, mechanism: installer.mechanism, allocator: self, tag: recorded.tag, logger: logger)
            recorder.recordAllocation(stack.descriptor)
            return stack
        } catch {
            if case .prefaultFailed = error.reason { recorder.recordPrefaultFailure() }
            _ = live.remove(recorded)
            throw error
        }
    }

    /// Refuses (logs, counts in `refusedReleases`, frees nothing) a descriptor that is not a live stack of
    /// this allocator, tag included: see `StackAllocator` on what that protects against.
    public func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        guard live.remove(descriptor) != nil else {
            recorder.recordRefusedRelease(descriptor, allocator: "mmap", logger: logger)
            return
        }
        let failed = !unmap(descriptor.layout.base, size: descriptor.layout.sizes.total)
        recorder.recordRelease(descriptor, failed: failed)
    }

    /// munmap, logging a failure (which would mean a corrupted descriptor): returns whether it worked.
    @discardableResult
    private func unmap(_ base: UInt, size: Int) -> Bool {
        Syscall.unmap(base, size: size, logger: logger, what: "a stack")
    }
}
