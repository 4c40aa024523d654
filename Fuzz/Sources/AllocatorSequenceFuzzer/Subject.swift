import FuzzSupport
import StackAllocators

/// The allocator an input drives, chosen by its first byte, and what the model may assume about it.
enum Subject: CaseIterable, CustomStringConvertible {
    /// `MmapStackAllocator` with lightweight guards where the kernel has them.
    case mmapAutomatic
    /// `MmapStackAllocator` with mprotect guards (two mappings per stack).
    case mmapMprotect

    /// Makes a fresh allocator.
    func make() -> any StackAllocator & StackStatsReporting {
        do {
            switch self {
            case .mmapAutomatic: return try MmapStackAllocator(guardMode: .automatic)
            case .mmapMprotect: return try MmapStackAllocator(guardMode: .mprotect)
            }
        } catch {
            finding("\(self): the allocator could not be made: \(error)")
        }
    }

    /// Whether a released stack's reservation is unmapped by the release itself.
    var unmapsOnRelease: Bool {
        switch self {
        case .mmapAutomatic, .mmapMprotect: true
        }
    }

    /// Whether the allocator keeps its guarded stacks in GuardRegistry while they live.
    var registersGuards: Bool {
        switch self {
        case .mmapAutomatic, .mmapMprotect: true
        }
    }

    /// Whether the pages of a new stack are resident exactly where its prefault plan says (fresh
    /// memory); otherwise at least there (reused memory may hold more).
    var residencyIsExact: Bool {
        switch self {
        case .mmapAutomatic, .mmapMprotect: true
        }
    }

    /// The mechanism a guarded stack of `allocator` must report.
    func guardMechanism(of allocator: any StackAllocator) -> GuardMechanism {
        switch self {
        case .mmapAutomatic: GuardInstaller.lightweightGuardsSupported ? .lightweight : .protNone
        case .mmapMprotect: .protNone
        }
    }

    var description: String {
        switch self {
        case .mmapAutomatic: "MmapStackAllocator(.automatic)"
        case .mmapMprotect: "MmapStackAllocator(.mprotect)"
        }
    }
}
