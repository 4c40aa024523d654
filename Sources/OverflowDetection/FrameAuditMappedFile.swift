import Glibc
import GuardPages
import Logging

/// A file mapped read-only for the frame audit, unmapped when dropped: the audit reads objects of
/// tens of megabytes, which must not be copied into arrays.
struct MappedFile: ~Copyable {
    let bytes: UnsafeRawBufferPointer
    private let logger: Logger

    /// Maps all of `path`. Throws `objectUnreadable` when it cannot be opened, is empty or cannot be mapped.
    init(_ path: String, logger: Logger) throws(StackError) {
        bytes = try Self.map(path, logger: logger)
        self.logger = logger
    }

    private static func map(_ path: String, logger: Logger) throws(StackError) -> UnsafeRawBufferPointer {
        let fd: Int32
        switch Syscall.openReadOnly(path) {
        case .success(let value): fd = value
        case .failure(let errno): throw .objectUnreadable(path: path, reason: "it cannot be opened", errno: errno)
        }
        defer {
            if case .failure(let errno) = Syscall.close(fd) {
                logger.warning("close of an audited object file failed", metadata: ["path": "\(path)", "errno": "\(errno)"])
            }
        }
        let info: stat
        switch Syscall.fileStatus(fd) {
        case .success(let value): info = value
        case .failure(let errno): throw .objectUnreadable(path: path, reason: "fstat failed", errno: errno)
        }
        guard info.st_mode & S_IFMT == S_IFREG, info.st_size > 0 else {
            throw .objectUnreadable(path: path, reason: "it is not a regular file with content", errno: nil)
        }
        let size = Int(info.st_size)
        switch Syscall.map(size: size, protection: PROT_READ, flags: MAP_PRIVATE, fd: fd) {
        case .success(let address):
            return UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: size)
        case .failure(let errno):
            throw .objectUnreadable(path: path, reason: "mmap of \(size) bytes failed", errno: errno)
        }
    }

    deinit {
        Syscall.unmap(UInt(bitPattern: bytes.baseAddress), size: bytes.count, logger: logger, what: "an audited object file")
    }
}
