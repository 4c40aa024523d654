import CStackSupport
import Glibc

/// The system's base page size (`sysconf(_SC_PAGESIZE)`), read once.
public let systemPageSize: Int = Int(sysconf(Int32(_SC_PAGESIZE)))

/// Validated, page-rounded sizes of one stack: a guard below a usable range.
///
/// Rounding: the usable size is rounded *up* to a multiple of `pageSize` (the page size of the usable
/// range, which is a huge page size for huge-page stacks); the guard is rounded *up* to a multiple of the
/// system page size. A guard of 0 means "no guard" and is kept as 0.
public struct StackSizes: Sendable, Hashable {
    /// Largest usable size accepted: 4 GiB. Anything larger is surely a bug in the caller.
    public static let maximumUsableSize = 4 << 30
    /// Largest guard accepted: 64 MiB.
    public static let maximumGuardSize = 64 << 20

    /// Usable bytes, a multiple of `pageSize`.
    public let usableSize: Int
    /// Guard bytes, a multiple of the system page size (0: unguarded).
    public let guardSize: Int
    /// Page size of the usable range.
    public let pageSize: Int

    /// Guard plus usable bytes: the size of the whole reservation.
    public var total: Int { guardSize + usableSize }

    /// Validates and rounds the sizes; never traps, whatever the input.
    public init(usableSize: Int, guardSize: Int, pageSize: Int = systemPageSize) throws(StackError) {
        guard pageSize >= 4096, pageSize.nonzeroBitCount == 1 else {
            throw .invalidPageSize(requested: pageSize, reason: "must be a power of two of at least 4096")
        }
        guard usableSize > 0 else {
            throw .invalidSize(requested: usableSize, reason: "must be positive")
        }
        guard let roundedUsable = roundUp(usableSize, to: pageSize) else {
            throw .invalidSize(requested: usableSize, reason: "overflows when rounded up to the page size \(pageSize)")
        }
        guard roundedUsable <= Self.maximumUsableSize else {
            throw .invalidSize(requested: usableSize, reason: "larger than the maximum of \(Self.maximumUsableSize) bytes")
        }
        guard guardSize >= 0 else {
            throw .invalidGuard(requested: guardSize, reason: "must not be negative (0 means no guard)")
        }
        guard let roundedGuard = roundUp(guardSize, to: systemPageSize), roundedGuard <= Self.maximumGuardSize else {
            throw .invalidGuard(
                requested: guardSize, reason: "larger than the maximum of \(Self.maximumGuardSize) bytes")
        }
        self.usableSize = roundedUsable
        self.guardSize = roundedGuard
        self.pageSize = pageSize
    }
}

/// Where one stack lies in memory: `[base, base + guardSize)` is the guard,
/// `[usableBottom, top)` the usable range. The stack grows down from `top`.
public struct StackLayout: Sendable, Hashable, CustomStringConvertible {
    /// Lowest address of the reservation (the guard's first byte; the usable bottom when unguarded).
    public let base: UInt
    /// The sizes the layout was built from.
    public let sizes: StackSizes

    /// Places `sizes` at `base`, which must be aligned to the system page size.
    public init(base: UInt, sizes: StackSizes) throws(StackError) {
        guard base % UInt(systemPageSize) == 0, base != 0 else {
            throw .invalidConfiguration(
                type: "StackLayout", field: "base", value: "0x\(String(base, radix: 16))",
                allowed: "a non-null multiple of the page size (\(systemPageSize) bytes)")
        }
        guard base.addingReportingOverflow(UInt(sizes.total)).overflow == false else {
            throw .invalidSize(requested: sizes.total, reason: "stack would extend past the end of the address space")
        }
        self.base = base
        self.sizes = sizes
    }

    /// The guard range (empty when unguarded).
    public var guardRange: Range<UInt> { base..<usableBottom }
    /// Lowest usable address.
    public var usableBottom: UInt { base + UInt(sizes.guardSize) }
    /// One past the highest usable address: the initial stack pointer.
    public var top: UInt { usableBottom + UInt(sizes.usableSize) }
    /// The usable range.
    public var usableRange: Range<UInt> { usableBottom..<top }
    /// Page size of the usable range.
    package var pageSize: Int { sizes.pageSize }

    public var description: String {
        "stack [0x\(String(usableBottom, radix: 16)), 0x\(String(top, radix: 16))) usable \(sizes.usableSize) B, "
            + "guard \(sizes.guardSize) B, page \(pageSize) B"
    }
}

/// `value` rounded up to a multiple of `alignment` (a power of two), or nil on overflow.
@inline(__always)
func roundUp(_ value: Int, to alignment: Int) -> Int? {
    let (sum, overflow) = value.addingReportingOverflow(alignment - 1)
    return overflow ? nil : sum & ~(alignment - 1)
}

extension StackLayout {
    /// The mmap flags of every small-page stack mapping: private and anonymous, MAP_NORESERVE (untouched
    /// stack pages reserve no swap) and MAP_STACK (no transparent huge pages on small stacks since Linux 6.7).
    @_spi(Benchmarks) public static let mappingFlags =
        FS_MAP_PRIVATE | FS_MAP_ANONYMOUS | FS_MAP_NORESERVE | FS_MAP_STACK
}
