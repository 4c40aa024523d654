import CStackSupport
import Glibc
import SystemPackage

/// What protects the bottom of a stack.
public enum GuardMechanism: String, Sendable, Hashable, CaseIterable, Codable {
    /// `MADV_GUARD_INSTALL` (Linux >= 6.13): faults on access, adds no VMA.
    case lightweight
    /// `mprotect(PROT_NONE)` or a separate PROT_NONE mapping: faults on access, costs a VMA.
    case protNone
    /// A known pattern at the usable bottom, checked on release and on request: detects, does not trap.
    case canary
    /// Nothing.
    case none

    /// Whether an access faults where it happens (`.lightweight`, `.protNone`): only then does the guard
    /// range count against the frames that could skip it.
    package var traps: Bool { self == .lightweight || self == .protNone }
}

/// Which hardware guard an allocator installs.
public enum GuardMode: String, Sendable, Hashable, CaseIterable, Codable {
    /// Lightweight guards where the kernel offers them, mprotect otherwise (decided once per process).
    case automatic
    /// Always `MADV_GUARD_INSTALL`; allocators refuse to start on kernels without it.
    case lightweight
    /// Always `mprotect(PROT_NONE)` (old kernels, or to measure the difference): `GuardMechanism.protNone`.
    /// Spelled `mprotect` on the command line.
    case protNone = "mprotect"
}

extension GuardMode: CustomStringConvertible {
    /// As spelled on the command line and in reports: `automatic`, `lightweight`, `mprotect`.
    public var description: String { rawValue }

    /// The modes that can be forced on this kernel: `.protNone` always, `.lightweight` where it works.
    package static var forcible: [GuardMode] {
        GuardInstaller.lightweightGuardsSupported ? [.lightweight, .protNone] : [.protNone]
    }
}

/// Installs guards over page ranges with the mechanism a `GuardMode` resolves to.
@_spi(Benchmarks) public struct GuardInstaller: Sendable, Hashable {
    /// Whether `MADV_GUARD_INSTALL` works here, and if not why: probed once per process on a scratch mapping,
    /// whose guarded page must then be inaccessible to a non-faulting read.
    @_spi(Benchmarks) public static let lightweightGuards = AdviceProbe(
        Int32(FS_MADV_GUARD_INSTALL), name: "MADV_GUARD_INSTALL", lacks: "needs Linux >= 6.13 (running \(kernelRelease))", since: (6, 13),
        pages: 2
    ) { scratch in fs_probe_readable(UnsafeRawPointer(bitPattern: scratch)) == EFAULT }

    /// Whether `MADV_GUARD_INSTALL` works here (`lightweightGuards`).
    @_spi(Benchmarks) public static let lightweightGuardsSupported = lightweightGuards.isSupported

    /// The mechanism `install` uses: never `.canary` or `.none`.
    package let mechanism: GuardMechanism

    /// Resolves `mode` on this kernel. Forcing `.lightweight` where the kernel lacks it is an error.
    package init(mode: GuardMode) throws(StackError) {
        switch mode {
        case .automatic:
            mechanism = Self.lightweightGuardsSupported ? .lightweight : .protNone
        case .lightweight:
            guard Self.lightweightGuardsSupported else {
                throw .capabilityMissing(
                    "MADV_GUARD_INSTALL (lightweight guard pages)",
                    fix: "\(Self.lightweightGuards.missing ?? "it was refused"); use GuardMode.protNone or .automatic")
            }
            mechanism = .lightweight
        case .protNone:
            mechanism = .protNone
        }
    }

    /// Makes `range` (page-aligned, inside a private anonymous mapping) fault on any access.
    /// ENOMEM from mprotect means the VMA split hit vm.max_map_count and becomes `.resourceExhausted`.
    package func install(on range: Range<UInt>) throws(StackError) {
        guard !range.isEmpty else { return }
        let size = Int(range.upperBound - range.lowerBound)
        let result =
            mechanism == .lightweight
            ? Syscall.advise(range.lowerBound, size: size, Int32(FS_MADV_GUARD_INSTALL))
            : Syscall.protect(range.lowerBound, size: size, PROT_NONE)
        if case .failure(let errno) = result {
            if errno == .noMemory, mechanism == .protNone, let exhausted = MapCount.exhaustedError() {
                throw exhausted
            }
            throw .guardInstallFailed(errno, mechanism: mechanism)
        }
    }
}

/// The running kernel's release string (`uname -r`).
@_spi(Benchmarks) public let kernelRelease: String = {
    var name = utsname()
    guard uname(&name) == 0 else { return "unknown" }
    return withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}()
