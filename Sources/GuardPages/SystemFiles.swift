import Glibc
import SystemPackage

/// Reads small kernel interface files (procfs, sysfs) without Foundation.
@_spi(Benchmarks) public enum SystemFile {
    /// The whole contents of `path` as text.
    @_spi(Benchmarks) public static func read(_ path: String) throws(StackError) -> String {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec, retryOnInterrupt: true)
        } catch {
            throw .systemFileUnreadable(path: path, error as? Errno ?? .ioError)
        }
        defer { try? fd.close() }
        var bytes: [UInt8] = []
        // Uninitialized: zeroing 64 KiB for a sysfs file of a few bytes cost more than reading it.
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 1)
        defer { chunk.deallocate() }
        while true {
            let count: Int
            do {
                count = try fd.read(into: chunk, retryOnInterrupt: true)
            } catch {
                throw .systemFileUnreadable(path: path, error as? Errno ?? .ioError)
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The first whitespace-separated integer in `path` (sysctl and sysfs counters).
    package static func readInteger(_ path: String) throws(StackError) -> Int {
        let text = try read(path)
        guard let value = text.split(whereSeparator: \.isWhitespace).first.flatMap({ Int($0) }) else {
            throw .systemFileUnreadable(path: path, .invalidArgument)
        }
        return value
    }

    /// A size field of /proc/self/status (`VmRSS`, `VmSize`, `VmPTE`), in bytes: the kernel's account.
    @_spi(Benchmarks) public static func processStatusBytes(_ field: String) throws(StackError) -> Int {
        let status = try read("/proc/self/status")
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
            let kibibytes = line.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap({ Int($0) })
        else { throw .systemFileUnreadable(path: "/proc/self/status", .invalidArgument) }
        return kibibytes << 10
    }
}

/// A `ulimit` on this process's mappings, and how much of it is in use: mmap fails with ENOMEM past it.
package struct MappingLimit: Sendable, Hashable {
    package enum Kind: Sendable, Hashable {
        /// `ulimit -v` (RLIMIT_AS): every mapping counts (VmSize).
        case addressSpace
        /// `ulimit -d` (RLIMIT_DATA): private writable mappings count (VmData), stacks among them.
        case data
    }

    package let kind: Kind
    /// The limit, in bytes.
    package let limit: Int
    /// What the process maps now that counts against it, in bytes.
    package let inUse: Int
    /// A limit of `kind` at `limit` bytes, `inUse` of them taken (`current()` reads the process's own).
    package init(kind: Kind, limit: Int, inUse: Int) {
        self.kind = kind
        self.limit = limit
        self.inUse = inUse
    }

    /// What is left under the limit.
    package var room: Int { max(0, limit - inUse) }
    /// The shell command that sets it: `ulimit -v` or `ulimit -d`.
    package var command: String { kind == .addressSpace ? "ulimit -v" : "ulimit -d" }
    /// Its name in getrlimit(2): `RLIMIT_AS` or `RLIMIT_DATA`.
    package var resource: String { kind == .addressSpace ? "RLIMIT_AS" : "RLIMIT_DATA" }

    /// The limits set on this process: none without `ulimit -v` and `ulimit -d`.
    package static func current() throws(StackError) -> [MappingLimit] {
        var limits: [MappingLimit] = []
        for (kind, resource, field) in [(Kind.addressSpace, RLIMIT_AS, "VmSize"), (.data, RLIMIT_DATA, "VmData")] {
            var limit = rlimit()
            // Fails only for a bad resource or pointer (EINVAL, EFAULT), neither of which is possible here.
            precondition(getrlimit(__rlimit_resource_t(resource.rawValue), &limit) == 0, "getrlimit failed: errno \(errno)")
            guard limit.rlim_cur != rlim_t.max else { continue }
            limits.append(MappingLimit(kind: kind, limit: Int(clamping: limit.rlim_cur), inUse: try SystemFile.processStatusBytes(field)))
        }
        return limits
    }
}

/// The process's count of memory mappings (VMAs) and the kernel's limit on it.
@_spi(Benchmarks) public enum MapCount {
    /// Path of the limit: `vm.max_map_count`.
    package static let limitPath = "/proc/sys/vm/max_map_count"

    /// Lines in /proc/self/maps: one per VMA.
    @_spi(Benchmarks) public static func current() throws(StackError) -> Int {
        try SystemFile.read("/proc/self/maps").utf8.lazy.filter { $0 == UInt8(ascii: "\n") }.count
    }

    /// `vm.max_map_count`.
    package static func limit() throws(StackError) -> Int {
        try SystemFile.readInteger(limitPath)
    }

    /// `.resourceExhausted` when the process is within `margin` mappings of the limit, else nil.
    /// Called after an ENOMEM to tell "out of mappings" from "out of memory".
    package static func exhaustedError(margin: Int = 4) -> StackError? {
        guard let limit = try? limit(), let current = try? current() else { return nil }
        return current + margin >= limit ? .mapCountExhausted(limit: limit, current: current) : nil
    }
}

/// The kernel's overcommit policy (`vm.overcommit_memory`).
package enum Overcommit {
    /// The sysctl's file.
    package static let path = "/proc/sys/vm/overcommit_memory"

    /// Whether overcommit is strict (mode 2): every writable private mapping is charged against
    /// CommitLimit when it is made writable, and MAP_NORESERVE is ignored. False when the file is unreadable.
    package static var isStrict: Bool {
        (try? SystemFile.readInteger(path)) == 2
    }
}
