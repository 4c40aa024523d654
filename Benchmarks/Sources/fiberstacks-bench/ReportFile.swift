import ArgumentParser
import Glibc

/// A file `bench --output` or `--svg` writes: checked before any benchmark runs, so a bad path costs
/// nothing, and written with plain syscalls, so a failure names the path and the errno. An existing file
/// is opened at the check and held until the report replaces its contents: a FIFO's reader stays
/// connected meanwhile, and a FIFO that no process reads is refused at once instead of blocking the end
/// of the run.
final class ReportFile {
    let path: String
    /// The existing file, opened at the check; nil for a file the report creates, or once written.
    private var descriptor: Int32?

    /// Checks `path`, given with `flag`: a usage error (exit 64) says why it cannot be written.
    init(path: String, flag: String) throws(ValidationError) {
        func refused(_ reason: String) -> ValidationError { ValidationError("\(flag) \(path): \(reason)") }
        guard !path.isEmpty else { throw refused("an empty path names no file") }
        self.path = path
        var status = stat()
        guard stat(path, &status) == 0 else {
            descriptor = nil
            if let reason = Self.uncreatableReason(in: Self.directory(of: path)) { throw refused(reason) }
            return
        }
        guard status.st_mode & S_IFMT != S_IFDIR else { throw refused("\(path) is a directory") }
        // Non-blocking, so that a FIFO without a reader fails (ENXIO) instead of waiting for one.
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw refused(errno == ENXIO ? "a FIFO that no process reads" : "cannot open it for writing: \(errnoText(errno))")
        }
        // A write of nothing finds a file that opens but takes no writes (/proc/version: EIO); after it,
        // writes block as usual.
        let flags = fcntl(fd, F_GETFL)
        guard Glibc.write(fd, "", 0) == 0, flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
            let reason = "cannot write to it: \(errnoText(errno))"
            close(fd)
            throw refused(reason)
        }
        descriptor = fd
    }

    deinit {
        // Reached with the file still held only when the run failed before its report: that failure is
        // the one to report, not this close's.
        if let descriptor { close(descriptor) }
    }

    /// The directory a file at `path` goes in.
    private static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Nil when a file can be created in `directory`, or why not: creates and removes a probe file.
    private static func uncreatableReason(in directory: String) -> String? {
        let probe = "\(directory)/.fiberstacks-output-check-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return "cannot create a file in \(directory): \(errnoText(errno))" }
        close(fd)
        guard unlink(probe) == 0 else { return "cannot remove the probe file \(probe): \(errnoText(errno))" }
        return nil
    }

    /// Writes `text` as the file's whole contents (a regular file is truncated first), then closes it.
    func write(_ text: String) throws(BenchFailure) {
        let fd: Int32
        if let held = descriptor {
            descriptor = nil
            fd = held
            var status = stat()
            if fstat(fd, &status) != 0 || (status.st_mode & S_IFMT == S_IFREG && ftruncate(fd, 0) != 0) {
                let failure = BenchFailure("cannot truncate \(path): \(errnoText(errno))")
                close(fd)
                throw failure
            }
        } else {
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw BenchFailure("cannot open \(path) for writing: \(errnoText(errno))") }
        }
        var failure: String?
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { failure = "cannot write \(path): \(errnoText(errno))"; return }
                offset += written
            }
        }
        if close(fd) != 0, failure == nil { failure = "cannot write \(path) (close): \(errnoText(errno))" }
        if let failure { throw BenchFailure(failure) }
    }
}
