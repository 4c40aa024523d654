@_spi(Benchmarks) import GuardPages
import FuzzSupport
@_spi(Benchmarks) import StackAllocators

/// The allocator an input drives, decoded from its first bytes, and what the model may assume about it.
enum Subject: CustomStringConvertible {
    /// `MmapStackAllocator`: one mapping per stack, unmapped on release.
    case mmap(GuardMode)
    /// `SlabStackAllocator`: stacks carved from regions, discarded (`MADV_DONTNEED`) in batches after release.
    case slab(SlabStackAllocator.Configuration)
    /// `PooledStackAllocator` over an mmap allocator (with this guard mode) or, when nil, over a slab of
    /// the pool's shape.
    case pool(PooledStackAllocator.Configuration, innerMmap: GuardMode?)

    /// Makes the allocator, or returns nil after checking that the configuration was rightly refused.
    func make() -> (any StackAllocator & StackStatsReporting)? {
        let result = Result { () throws(StackError) -> any StackAllocator & StackStatsReporting in
            switch self {
            case .mmap(let mode):
                return try MmapStackAllocator(guardMode: mode)
            case .slab(let configuration):
                return try SlabStackAllocator(configuration)
            case .pool(let configuration, let innerMmap):
                let inner: any StackAllocator =
                    if let innerMmap { try MmapStackAllocator(guardMode: innerMmap) }
                    else { try SlabStackAllocator(Self.innerSlab(of: configuration)) }
                return try PooledStackAllocator(wrapping: inner, configuration)
            }
        }
        switch (result, configurationError) {
        case (.success(let allocator), nil):
            return allocator
        case (.failure(let error), let expected?):
            check(error.matches(expected), "\(self) threw \(error), expected \(expected)")
            return nil
        case (.success, let expected?):
            finding("\(self) was made; the model expects \(expected)")
        case (.failure(let error), nil):
            finding("\(self) could not be made: \(error)")
        }
    }

    /// The slab a pool without an mmap allocator draws from: the pool's stack shape and placement.
    static func innerSlab(of pool: PooledStackAllocator.Configuration) -> SlabStackAllocator.Configuration {
        SlabStackAllocator.Configuration(
            usableSize: pool.stack.usableSize, guardSize: pool.stack.guardSize, stacksPerRegion: 8,
            placement: pool.stack.placement)
    }

    /// The error the model expects the configuration to be refused with, first rule first. Configuration
    /// errors name the type and the field; values and ranges are the allocator's wording.
    var configurationError: StackError? {
        func invalid(_ type: String, _ field: String) -> StackError {
            .configurationError(type: type, field: field)
        }
        func sizesError(_ usable: Int, _ guardSize: Int, _ type: String, prefix: String) -> StackError? {
            if case .failure(let error) = Result(catching: { () throws(StackError) in try StackSizes(usableSize: usable, guardSize: guardSize) }) {
                if error.isSizeError(.stack, requested: usable) { return invalid(type, prefix + "usableSize") }
                if error.isSizeError(.guardSize, requested: guardSize) { return invalid(type, prefix + "guardSize") }
                return error
            }
            return nil
        }
        switch self {
        case .mmap:
            return nil
        case .slab(let configuration):
            let type = "SlabStackAllocator.Configuration"
            if let error = sizesError(configuration.usableSize, configuration.guardSize, type, prefix: "") { return error }
            let sizes = try! StackSizes(usableSize: configuration.usableSize, guardSize: configuration.guardSize)
            let mostStacks = min(Int(UInt32.max), SlabStackAllocator.Configuration.maximumRegionSize / sizes.total)
            if configuration.stacksPerRegion <= 0 || configuration.stacksPerRegion > mostStacks {
                return invalid(type, "stacksPerRegion")
            }
            if configuration.retainedEmptyRegions < 0 { return invalid(type, "retainedEmptyRegions") }
            if !(1...64).contains(configuration.discardBatch) { return invalid(type, "discardBatch") }
            if configuration.mapCountReserve < 0 { return invalid(type, "mapCountReserve") }
            return nil
        case .pool(let configuration, let innerMmap):
            let type = "PooledStackAllocator.Configuration"
            // Without an mmap allocator inside, the inner slab is made first and refuses bad sizes itself.
            let sizesError =
                innerMmap == nil
                ? sizesError(configuration.stack.usableSize, configuration.stack.guardSize, "SlabStackAllocator.Configuration", prefix: "")
                : sizesError(configuration.stack.usableSize, configuration.stack.guardSize, type, prefix: "stack.")
            if let sizesError { return sizesError }
            if configuration.maximumIdle < 0 { return invalid(type, "maximumIdle") }
            if configuration.minimumIdle < 0 || configuration.minimumIdle > configuration.maximumIdle {
                return invalid(type, "minimumIdle")
            }
            if configuration.threadCacheSize < 0 || configuration.threadCacheSize > 1 << 16 { return invalid(type, "threadCacheSize") }
            if configuration.idlePeriod < .zero { return invalid(type, "idlePeriod") }
            if let watermark = configuration.hotWatermark, watermark.bytes < 0 { return invalid(type, "hotWatermark.bytes") }
            return nil
        }
    }

    /// Whether a released stack's memory is unmapped by the release itself (and leaves GuardRegistry).
    var unmapsOnRelease: Bool {
        if case .mmap = self { return true }
        return false
    }

    /// Whether only planned and written pages of a new stack are resident: fresh mappings, and slab slots
    /// (discarded on release). A pool's reused stacks keep what their previous owner touched.
    var residencyIsExact: Bool {
        if case .pool = self { return false }
        return true
    }

    /// Whether a new stack reads zeros where a previous owner of the memory wrote: fresh mappings, slab
    /// slots (discarded), and pools that scrub on release.
    var zeroesBetweenOwners: Bool {
        if case .pool(let configuration, _) = self { return configuration.scrubOnRelease }
        return true
    }

    /// Whether the counters' `bytesReserved` is the sum of the live stacks' sizes (a slab or a pool
    /// reserves more than its live stacks).
    var reservesPerStack: Bool { unmapsOnRelease }

    /// The mechanism a guarded stack must report when its guards were installed in `mode`.
    func guardMechanism(mode: GuardMode) -> GuardMechanism {
        mode == .protNone ? .protNone : GuardInstaller.lightweightGuardsSupported ? .lightweight : .protNone
    }

    /// The guard mode the subject's stacks get (a slab under a pool uses `.automatic`).
    var guardMode: GuardMode {
        switch self {
        case .mmap(let mode): mode
        case .slab(let configuration): configuration.guardMode
        case .pool(_, let innerMmap): innerMmap ?? .automatic
        }
    }

    var description: String {
        switch self {
        case .mmap(let mode): "MmapStackAllocator(\(mode))"
        case .slab(let configuration): "SlabStackAllocator(\(configuration))"
        case .pool(let configuration, let innerMmap):
            "PooledStackAllocator(\(configuration)) over " + (innerMmap.map { "MmapStackAllocator(\($0))" } ?? "a slab")
        }
    }
}

extension ByteReader {
    /// The allocator: mmap with either guard mode, a slab, or a pool over mmap or over a slab, with a
    /// configuration that is mostly valid and sometimes refused.
    mutating func subject() -> Subject {
        switch byte() % 6 {
        case 0: return .mmap(.automatic)
        case 1: return .mmap(.protNone)
        case 2, 3:
            let (usable, guardSize) = fixedShape()
            return .slab(
                SlabStackAllocator.Configuration(
                    usableSize: usable, guardSize: guardSize,
                    stacksPerRegion: byte() < 16 ? pick([0, -1, Int.max, Int(UInt32.max) + 1]) : int(in: 1...16),
                    guardMode: bool() ? .automatic : .protNone,
                    retainedEmptyRegions: byte() < 8 ? -1 : int(in: 0...2),
                    discardBatch: byte() < 8 ? pick([0, 65]) : int(in: 1...8),
                    mapCountReserve: byte() < 8 ? -1 : 1024,
                    placement: configuredPlacement()))
        default:
            let (usable, guardSize) = fixedShape()
            let minimumIdle = byte() < 8 ? -1 : int(in: 0...4)
            let watermark: PooledStackAllocator.HotWatermark? =
                switch byte() % 4 {
                case 0: nil
                case 1: .init(bytes: byte() < 16 ? -1 : int(in: 0...(256 << 10)), timing: .everyRelease)
                default: .init(bytes: int(in: 0...(256 << 10)), timing: .whenDeposited)
                }
            let configuration = PooledStackAllocator.Configuration(
                stack: StackRequest(usableSize: usable, guardSize: guardSize, placement: configuredPlacement()),
                minimumIdle: minimumIdle,
                maximumIdle: byte() < 8 ? minimumIdle - 1 : max(minimumIdle, 0) + int(in: 0...12),
                threadCacheSize: byte() < 8 ? -1 : int(in: 0...8),
                idlePeriod: bool() ? .zero : .seconds(10),
                hotWatermark: watermark,
                scrubOnRelease: bool())
            return .pool(configuration, innerMmap: byte() % 3 == 0 ? nil : bool() ? .automatic : .protNone)
        }
    }

    /// The one stack shape of a slab or pool: mostly whole pages, sometimes odd byte counts or invalid.
    mutating func fixedShape() -> (usable: Int, guardSize: Int) {
        let usable = byte() < 8 ? pick([0, -1, StackSizes.maximumUsableSize + 1]) : bool() ? int(in: 4...64) * systemPageSize : int(in: 1...(256 << 10))
        let guardSize = byte() < 8 ? pick([-1, StackSizes.maximumGuardSize + 1]) : pick([0, systemPageSize, 16 << 10, 64 << 10, 5000])
        return (usable, guardSize)
    }

    /// A slab's or pool's own placement: none, or one on this machine's first memory node (a placement
    /// on a missing node is fuzzed through requests to the mmap allocator).
    mutating func configuredPlacement() -> NUMAPlacement? {
        byte() % 4 == 0 ? .bind(memoryNodes[0]) : nil
    }
}
