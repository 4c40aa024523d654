import Glibc

/// The file `bench --output` writes: checked before any benchmark runs, so a bad path costs nothing,
/// and written with plain syscalls, so a failure names the path and the errno.
struct ReportFile {
    let path: String

    /// The directory the file goes in.
    var directory: String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Nil when the file can be written, or why not: creates and removes a probe file in its directory.
    func unwritableReason() -> String? {
        var status = stat()
        if stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR { return "\(path) is a directory" }
        let probe = "\(directory)/.fiberstacks-output-check-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return "cannot create a file in \(directory): \(Self.errnoText())" }
        close(fd)
        guard unlink(probe) == 0 else { return "cannot remove the probe file \(probe): \(Self.errnoText())" }
        return nil
    }

    /// Writes `text` (creating or truncating the file).
    func write(_ text: String) throws(BenchFailure) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BenchFailure("cannot open \(path) for writing: \(Self.errnoText())") }
        var failure: String?
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { failure = "cannot write \(path): \(Self.errnoText())"; return }
                offset += written
            }
        }
        if close(fd) != 0, failure == nil { failure = "cannot write \(path) (close): \(Self.errnoText())" }
        if let failure { throw BenchFailure(failure) }
    }

    /// "No such file or directory (errno 2)" for the current errno.
    static func errnoText() -> String {
        let code = errno
        return "\(String(cString: strerror(code))) (errno \(code))"
    }
}
