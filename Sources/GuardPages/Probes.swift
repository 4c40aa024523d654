import CStackSupport
import Glibc
import SystemPackage

/// Non-faulting questions about memory: never raise a signal, whatever the address.
@_spi(Benchmarks) public enum Probe {
    /// Whether one byte at `address` can be read, asked through process_vm_readv on this process.
    ///
    /// Returns false for guards, PROT_NONE and unmapped addresses (the kernel answers EFAULT).
    /// Reading a readable page that was never touched maps the shared zero page; probe guards, or
    /// measure residency before probing usable pages.
    @_spi(Benchmarks) public static func isAccessible(_ address: UInt) throws(StackError) -> Bool {
        let code = fs_probe_readable(UnsafeRawPointer(bitPattern: address))
        switch code {
        case 0: return true
        case EFAULT: return false
        default: throw .probeFailed(Errno(rawValue: code), what: "address 0x\(String(address, radix: 16))")
        }
    }

    /// Whether the byte at `address` can be written: it is read and written back, unchanged, through
    /// process_vm_readv and process_vm_writev on this process. False for memory mapped without
    /// PROT_WRITE, guards and unmapped addresses. The page becomes resident, as a write would make it.
    package static func isWritable(_ address: UInt) throws(StackError) -> Bool {
        let code = fs_probe_writable(UnsafeMutableRawPointer(bitPattern: address))
        switch code {
        case 0: return true
        case EFAULT: return false
        default: throw .probeFailed(Errno(rawValue: code), what: "writing back the byte at 0x\(String(address, radix: 16))")
        }
    }

    /// How many pages of `range` are accessible, probing the first byte of each system page.
    @_spi(Benchmarks) public static func accessiblePages(in range: Range<UInt>) throws(StackError) -> Int {
        var accessible = 0
        for page in stride(from: range.lowerBound, to: range.upperBound, by: systemPageSize)
        where try isAccessible(page) {
            accessible += 1
        }
        return accessible
    }

    /// Residency of each system page of `range` (page-aligned) from mincore: true where resident.
    /// Throws `.systemCallFailed` with ENOMEM when part of the range is not mapped.
    @_spi(Benchmarks) public static func residency(of range: Range<UInt>) throws(StackError) -> [Bool] {
        let pages = Int(range.upperBound - range.lowerBound) / systemPageSize
        var vector = [UInt8](repeating: 0, count: pages)
        let result = vector.withUnsafeMutableBufferPointer { buffer in
            Syscall.residency(range.lowerBound, size: pages * systemPageSize, into: buffer.baseAddress!)
        }
        if case .failure(let errno) = result {
            throw .probeFailed(errno, what: "residency of [0x\(String(range.lowerBound, radix: 16)), +\(pages) pages)")
        }
        return vector.map { $0 & 1 == 1 }
    }

    /// Number of resident system pages in `range`.
    @_spi(Benchmarks) public static func residentPages(in range: Range<UInt>) throws(StackError) -> Int {
        try residency(of: range).lazy.filter { $0 }.count
    }

    /// The first system page of `range` (page-aligned) that is not mapped, or nil when all are: one
    /// mincore per 4096 pages, then one per page only where a call answered ENOMEM.
    package static func firstUnmappedPage(in range: Range<UInt>) throws(StackError) -> UInt? {
        let chunk = UInt(4096 * systemPageSize)
        var vector = [UInt8](repeating: 0, count: Int(min(chunk, range.upperBound - range.lowerBound)) / systemPageSize)
        return try vector.withUnsafeMutableBufferPointer { (buffer) throws(StackError) -> UInt? in
            /// Whether `[address, address + size)` is mapped.
            func mapped(_ address: UInt, _ size: UInt) throws(StackError) -> Bool {
                switch Syscall.residency(address, size: Int(size), into: buffer.baseAddress!) {
                case .success: return true
                case .failure(.noMemory): return false
                case .failure(let errno): throw .probeFailed(errno, what: "mapping state of 0x\(String(address, radix: 16))")
                }
            }
            for start in stride(from: range.lowerBound, to: range.upperBound, by: Int(chunk)) {
                let end = min(start + chunk, range.upperBound)
                guard try !mapped(start, end - start) else { continue }
                for page in stride(from: start, to: end, by: systemPageSize) where try !mapped(page, UInt(systemPageSize)) {
                    return page
                }
            }
            return nil
        }
    }

    /// Whether every system page of `range` is unmapped (mincore answers ENOMEM for each).
    @_spi(Benchmarks) public static func isUnmapped(_ range: Range<UInt>) throws(StackError) -> Bool {
        var byte: UInt8 = 0
        for page in stride(from: range.lowerBound, to: range.upperBound, by: systemPageSize) {
            switch Syscall.residency(page, size: systemPageSize, into: &byte) {
            case .success: return false
            case .failure(.noMemory): continue
            case .failure(let errno): throw .probeFailed(errno, what: "mapping state of 0x\(String(page, radix: 16))")
            }
        }
        return true
    }
}

/// What the probes say about one stack: the guard and the residency of its usable range.
public struct StackProbeReport: Sendable, Hashable, Codable {
    /// System pages in the guard.
    public let guardPages: Int
    /// Guard pages that were readable (must be 0 for a hardware guard).
    public let accessibleGuardPages: Int
    /// Guard pages that are resident (must be 0: prefault never touches a guard).
    public let residentGuardPages: Int
    /// System pages in the usable range.
    public let usablePages: Int
    /// Resident system pages in the usable range.
    public let residentUsablePages: Int

    /// Probes `layout`: residency first (mincore has no side effects), then guard accessibility.
    public init(layout: StackLayout) throws(StackError) {
        let guardResidency = try Probe.residency(of: layout.guardRange)
        usablePages = layout.sizes.usableSize / systemPageSize
        residentUsablePages = try Probe.residentPages(in: layout.usableRange)
        guardPages = guardResidency.count
        residentGuardPages = guardResidency.lazy.filter { $0 }.count
        accessibleGuardPages = try Probe.accessiblePages(in: layout.guardRange)
    }

    /// True when the guard has pages and none of them is readable or resident.
    public var guardIsSound: Bool { guardPages > 0 && accessibleGuardPages == 0 && residentGuardPages == 0 }
}
