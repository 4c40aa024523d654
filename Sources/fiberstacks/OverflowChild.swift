import ArgumentParser
import Glibc
import StackAllocators
import StackDiagnostics

/// `fiberstacks overflow-child` (hidden): the process `verify` and the tests watch die. It installs the
/// overflow handler, then overflows a labelled guarded stack on a secondary thread, writes into the
/// guard of one labelled stack among `--stacks` of an allocator, or writes through a null pointer.
/// Core dumps are switched off for it (the parent checks the signal, not a core).
struct OverflowChild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overflow-child",
        abstract: "Die by a stack overflow or another fault, for `verify` (internal: exits 3 when a stack cannot be made, 4 when the fault did not kill it).",
        shouldDisplay: false)

    /// What the child does.
    enum Fault: String, ExpressibleByArgument, CaseIterable {
        /// Recurse on a labelled guarded stack, on a secondary thread, until it overflows.
        case overflow
        /// Write one byte `--offset` bytes below the usable bottom of stack `--target` of `--stacks`.
        case guardWrite = "guard-write"
        /// Write through a null pointer on the main thread.
        case null
    }

    /// The allocator whose guard `guard-write` hits.
    enum Allocator: String, ExpressibleByArgument, CaseIterable {
        case mmap, slab, pool
        /// One huge-page stack per region (`--huge-backing`).
        case huge
        /// Packed huge-page stacks: the write hits the region's guard, below its lowest stack.
        case hugePacked = "huge-packed"
    }

    @Option(help: "The faulting stack's label.")
    var label = "verify@worker-1"

    @Option(help: "The name of the thread that overflows.")
    var threadName = "fs-worker-1"

    @Option(help: "What to do: overflow, guard-write or null.")
    var fault = Fault.overflow

    @Option(help: "The guard: automatic, lightweight or mprotect.")
    var guardMode = GuardMode.automatic

    @Option(help: "guard-write: the allocator (mmap, slab, pool, huge, huge-packed).")
    var allocator = Allocator.mmap

    @Option(help: "guard-write with huge or huge-packed: anonymous, hugetlbfs or transparent.")
    var hugeBacking = "anonymous"

    @Option(help: "guard-write: how many 64 KiB stacks to allocate (1...1000000).")
    var stacks = 1

    @Option(help: "guard-write: the index of the stack whose guard is written (labelled with --label; 0..<--stacks).")
    var target = 0

    @Option(help: "guard-write: how many bytes below the usable bottom to write (1...guard size).")
    var offset = 1

    @Option(help: "guard-write: the guard size in bytes (4096...64 MiB).")
    var guardSize = 64 << 10

    @Flag(help: "Do not install the overflow handler (the control case).")
    var noHandler = false

    func validate() throws {
        guard (1...1_000_000).contains(stacks) else { throw ValidationError("--stacks must lie in 1...1000000") }
        guard (0..<stacks).contains(target) else { throw ValidationError("--target must lie in 0..<--stacks") }
        guard (4096...StackSizes.maximumGuardSize).contains(guardSize) else {
            throw ValidationError("--guard-size must lie in 4096...\(StackSizes.maximumGuardSize) (64 MiB), not \(guardSize)")
        }
        guard (1...guardSize).contains(offset) else { throw ValidationError("--offset must lie in 1...--guard-size") }
        guard ["anonymous", "hugetlbfs", "transparent"].contains(hugeBacking) else {
            throw ValidationError("--huge-backing must be anonymous, hugetlbfs or transparent")
        }
    }

    func run() throws {
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
        if !noHandler {
            try OverflowHandler.install()
        }
        switch fault {
        case .overflow:
            let stack = try MmapStackAllocator(guardMode: guardMode).allocate(StackRequest(usableSize: 256 << 10))
            stack.setOverflowLabel(label)
            try StackThread.run(on: stack.descriptor.layout, name: threadName) {
                do {
                    try AlternateSignalStack.installForCurrentThread()
                } catch {
                    FileStream.standardError.write("overflow-child: \(error)\n")
                    Glibc.exit(3)
                }
                StackThread.overflow()
            }
        case .guardWrite:
            try writeIntoGuard()
        case .null:
            UnsafeMutableRawPointer(bitPattern: 8)!.storeBytes(of: 1, as: UInt8.self)
        }
        FileStream.standardError.write("overflow-child: the fault did not kill the process\n")
        throw ExitCode(4)
    }

    /// Allocates `stacks` stacks, labels stack `target`, and writes `offset` bytes below its usable bottom.
    private func writeIntoGuard() throws {
        let request = StackRequest(usableSize: 64 << 10, guardSize: guardSize)
        let backing: HugePageRequest.Backing = switch hugeBacking {
        case "hugetlbfs": .hugetlbfs()
        case "transparent": .transparent
        default: .anonymous
        }
        let made: any StackAllocator
        var stackRequest = request
        switch allocator {
        case .mmap: made = try MmapStackAllocator(guardMode: guardMode)
        case .slab: made = try SlabStackAllocator(.init(usableSize: 64 << 10, guardSize: guardSize, guardMode: guardMode))
        case .pool: made = try PooledStackAllocator(wrapping: try MmapStackAllocator(guardMode: guardMode), .init(stack: request))
        case .huge:
            made = HugePageStackAllocator()
            stackRequest = StackRequest(usableSize: 2 << 20, guardSize: guardSize, pages: .huge(HugePageRequest(backing)))
        case .hugePacked:
            made = HugePageStackAllocator()
            stackRequest.pages = .huge(HugePageRequest(backing, packing: .packed))
        }
        let storage = UnsafeMutablePointer<Stack>.allocate(capacity: stacks)
        for index in 0..<stacks {
            do {
                (storage + index).initialize(to: try made.allocate(stackRequest))
            } catch {
                FileStream.standardError.write("overflow-child: stack \(index) of \(stacks): \(error)\n")
                Glibc.exit(3)
            }
        }
        let stack = storage + target
        if !stack.pointee.setOverflowLabel(label) {
            FileStream.standardError.write("overflow-child: stack \(target) is not in the guard registry\n")
        }
        (stack.pointee.usableBottom - offset).storeBytes(of: 1, as: UInt8.self)
    }
}

extension GuardMode: ExpressibleByArgument {}
