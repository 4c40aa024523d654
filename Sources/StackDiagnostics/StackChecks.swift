import CStackSupport
import Glibc
@_spi(Benchmarks) import GuardPages
import StackAllocators
import SystemPackage

/// Bytes only one stack's memory can hold: written below its top before the release, and read back
/// (without faulting) afterwards. They survive only if the memory was never unmapped: another thread's
/// mapping made in the freed addresses since (a malloc arena, a thread stack) starts zeroed or holds
/// bytes of its own, so it is never mistaken for the stack.
package struct ReleaseMark {
    private let words: (UInt64, UInt64)

    /// Writes a random mark into the live stack at `layout`.
    package init(writingInto layout: StackLayout) {
        words = (UInt64.random(in: 1...UInt64.max), UInt64.random(in: 1...UInt64.max))
        let slot = UnsafeMutableRawPointer(bitPattern: layout.top - 16)!
        slot.storeBytes(of: words.0, as: UInt64.self)
        slot.storeBytes(of: words.1, toByteOffset: 8, as: UInt64.self)
    }

    /// Whether the mark is still in the memory at `layout`. Throws when the read itself fails for another
    /// reason than an inaccessible address (process_vm_readv blocked, say): then nothing can be told.
    package func survives(in layout: StackLayout) throws(StackError) -> Bool {
        var found: (UInt64, UInt64) = (0, 0)
        let code = withUnsafeMutableBytes(of: &found) { fs_probe_read(UnsafeRawPointer(bitPattern: layout.top - 16), $0.baseAddress, 16) }
        switch code {
        case 0: return found == words
        case EFAULT: return false
        default: throw .probeFailed(Errno(rawValue: code), what: "the release mark below 0x\(String(layout.top, radix: 16))")
        }
    }
}

/// Checks every allocator-independent property of one live stack: its guard and its residency.
package enum StackChecks {
    /// Why released stacks keep their memory on this machine, for a check of discards: "; " and what
    /// refuses `MADV_DONTNEED`, or "" where it works.
    package static var discardCause: String {
        StackHygiene.discards.missing.map { "; \($0)" } ?? ""
    }

    /// How many of `count` stacks fit in half of what each memory limit on this process leaves, each
    /// stack holding `residentEach` bytes of memory and `committedEach` bytes of address space: MemAvailable;
    /// the tightest memory cgroup above this one (a container's limit is often far below MemAvailable, and
    /// past it comes the OOM killer); the address-space limit (`ulimit -v`), which counts every mapping,
    /// touched or not, and the data limit (`ulimit -d`), which counts the private writable ones; and with
    /// `vm.overcommit_memory` 2, the commit limit, which charges every writable private mapping whether
    /// it is touched or not. Under `ulimit -v` a new malloc arena's address space is set aside first
    /// (`arenaAddressSpace`). Returns that count and, for each limit that lowered it, what it allows and
    /// how to raise it. `mappingLimits` replaces the process's own `ulimit -v` and `ulimit -d`.
    package static func fittingMemory(
        _ count: Int, residentEach: Int, committedEach: Int, mappingLimits: [MappingLimit]? = nil
    ) throws -> (count: Int, limits: [String]) {
        var (count, limits) = (count, [String]())
        let meminfo = try SystemFile.read("/proc/meminfo")
        func kibibytes(_ field: String) -> Int { SystemFile.meminfoField(field, in: meminfo) ?? 0 }
        let availableKiB = kibibytes("MemAvailable")
        let room = availableKiB * 1024 / 2 / residentEach
        if room < count {
            count = room
            limits.append("MemAvailable \(availableKiB) KiB allows \(room) (free memory: stop what holds it, or run where more is free)")
        }
        if let cgroup = MemoryCgroup.current(), cgroup.room / 2 / residentEach < count {
            count = cgroup.room / 2 / residentEach
            limits.append("the memory cgroup limit allows \(count) (\(cgroup.limitFile): \(cgroup.limit) B, \(cgroup.usage) B "
                + "in use; raise it there)")
        }
        for limit in try mappingLimits ?? MappingLimit.current() {
            let setAside = limit.kind == .addressSpace ? arenaAddressSpace : 0
            let room = max(0, limit.room - setAside) / 2 / committedEach
            guard room < count else { continue }
            count = room
            let arena = setAside > 0 ? ", \(setAside >> 20) MiB of it left for a new malloc arena" : ""
            limits.append("\(limit.command) allows \(count) (\(limit.limit) B, \(limit.inUse) B in use\(arena); raise it "
                + "with `\(limit.command) unlimited`)")
        }
        if Overcommit.isStrict {
            let (limitKiB, committedKiB) = (kibibytes("CommitLimit"), kibibytes("Committed_AS"))
            let room = max(0, limitKiB - committedKiB) * 1024 / 2 / committedEach
            if room < count {
                count = room
                limits.append("vm.overcommit_memory=2 allows \(room) (/proc/meminfo: CommitLimit \(limitKiB) KiB, "
                    + "Committed_AS \(committedKiB) KiB; raise vm.overcommit_ratio, or set vm.overcommit_memory=0)")
            }
        }
        return (count, limits)
    }

    /// Address space a thread may take under `ulimit -v` while a check holds its stacks: its first malloc
    /// can make a glibc arena, which reserves 64 MiB and maps twice that for a moment to align it. When
    /// that mapping fails, the arena is not made, but a check's own mmap failing instead is a false failure.
    package static let arenaAddressSpace = 128 << 20

    /// How many of `asked` stacks a check that counts map lines can give mprotect guards: what `budget`
    /// leaves after `lessLines` other mappings, with the note its row adds when that is fewer. Throws,
    /// naming the sysctl, when fewer than 100 fit.
    package static func mprotectStacks(_ asked: Int, fitting budget: MapCountBudget, lessLines: Int = 0) throws
        -> (count: Int, note: String)
    {
        let room = budget.guardsRemaining - lessLines
        guard room >= 100 else {
            throw CheckError(description: "vm.max_map_count=\(budget.limit) leaves room for \(max(room, 0)) mprotect-guarded "
                + "stacks (the process has \(budget.estimate) mappings, \(budget.reserveInUse) kept in reserve): raise it "
                + "with `sysctl -w vm.max_map_count=262144`")
        }
        guard room < asked else { return (asked, "") }
        return (room, " (scaled down from \(asked): vm.max_map_count=\(budget.limit) leaves room for \(room))")
    }

    /// For each prefault strategy: allocates one 256 KiB stack with it, checks it, releases it, and (when
    /// `unmapsOnRelease`) checks that the guard and the usable range are gone.
    package static func runLifecycles(
        _ allocator: any StackAllocator, name: String, unmapsOnRelease: Bool = true, into report: inout VerifyReport
    ) {
        for strategy in PrefaultStrategy.allCases {
            runLifecycle(
                allocator, name: name, request: StackRequest(usableSize: 256 << 10, prefault: PrefaultPolicy(strategy)),
                unmapsOnRelease: unmapsOnRelease, into: &report)
        }
    }

    /// One stack for `request`: allocated, checked, released, and checked gone when `unmapsOnRelease`.
    private static func runLifecycle(
        _ allocator: any StackAllocator, name: String, request: StackRequest, unmapsOnRelease: Bool,
        into report: inout VerifyReport
    ) {
        let strategy = request.prefault.strategy
        let stack: Stack
        do {
            stack = try allocator.allocate(request)
        } catch {
            report.add("allocate/\(strategy)", name, false, "error: \(error)")
            return
        }
        run(stack, allocator: name, prefault: strategy, into: &report)
        let layout = stack.descriptor.layout
        let mark = ReleaseMark(writingInto: layout)
        stack.release()
        if unmapsOnRelease {
            report.check("release-unmaps/\(strategy)", name) {
                let kept = try mark.survives(in: layout)
                return (!kept, "the stack's memory \(kept ? "is still" : "is no longer") mapped after release")
            }
        }
    }

    /// Probes `stack` and records whether its guard is sound and its residency matches `prefault`.
    package static func run(_ stack: borrowing Stack, allocator: String, prefault: PrefaultStrategy, into report: inout VerifyReport) {
        report.check("guard-inaccessible/\(prefault)", allocator) {
            let probe = try StackProbeReport(layout: stack.descriptor.layout)
            return (
                probe.guardIsSound,
                "\(probe.guardPages) guard pages (\(stack.guardMechanism)): \(probe.accessibleGuardPages) readable, "
                    + "\(probe.residentGuardPages) resident")
        }
        report.check("prefault-\(prefault)", allocator) {
            let probe = try StackProbeReport(layout: stack.descriptor.layout)
            let resident = probe.residentUsablePages
            let expected = prefault == .none ? "at most 1" : "all \(probe.usablePages)"
            let passed = probe.residentGuardPages == 0
                && (prefault == .none ? resident <= 1 : resident == probe.usablePages)
            return (passed, "\(resident)/\(probe.usablePages) usable pages resident (expected \(expected)), "
                + "\(probe.residentGuardPages) guard pages resident")
        }
    }
}
