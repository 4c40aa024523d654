import Glibc
import SystemPackage

/// Reads small kernel interface files (procfs, sysfs) without Foundation.
@_spi(Benchmarks) public enum SystemFile {
    /// The number of `field` in /proc/meminfo's `text` ("HugePages_Free:  64" gives 64), nil when absent.
    package static func meminfoField(_ field: String, in text: String) -> Int? {
        text.split(separator: "\n").first { $0.hasPrefix("\(field):") }?
            .split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap { Int($0) }
    }

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

/// The kernel's interfaces under /sys, and why one of them cannot be read.
package enum Sysfs {
    /// Why the kernel interface directory `path` (under /sys) lists nothing: sysfs not mounted on /sys (a
    /// container started without it); another file system mounted over `path` or a directory above it (a
    /// container's masked paths); `path` there but empty or unreadable; or else a kernel without `config`.
    package static func missing(_ path: String, kernelNeeds config: String) -> String {
        guard case .success(let root) = Syscall.fileSystem(at: "/sys"), root.type == magic else {
            return "sysfs is not mounted on /sys, so \(path) cannot be read: as root, mount -t sysfs sysfs /sys, or give "
                + "the container /sys"
        }
        var existing = path
        while access(existing, F_OK) != 0, existing.count > "/sys".count {
            existing = String(existing[..<(existing.lastIndex(of: "/") ?? existing.startIndex)])
        }
        if case .success(let fileSystem) = Syscall.fileSystem(at: existing), fileSystem.type != magic {
            return "\(path) is hidden: \(existing) is a \(fileSystemName(fileSystem.type)) mounted over sysfs (a container's "
                + "masked path): unmount it, or start the container without masking \(existing)"
        }
        guard existing == path else { return "this kernel has no \(path): it needs \(config)" }
        return "\(path) lists nothing this process can read (a security module or a container may restrict it): "
            + "give the process read access to it"
    }

    /// A file system's name from its statfs magic: the usual ones over a sysfs path, else the number.
    private static func fileSystemName(_ type: Int) -> String {
        switch type {
        case 0x0102_1994: "tmpfs"
        case 0x9fa0: "procfs"
        case 0x794c_7630: "overlayfs"
        case 0x1373: "devtmpfs"
        default: "file system of type 0x\(String(type, radix: 16))"
        }
    }

    /// SYSFS_MAGIC (linux/magic.h): statfs's type of a sysfs.
    private static let magic = 0x6265_6572
}
