import Glibc
import Synchronization

/// Unbuffered writes to a standard stream. A write to standard output that fails (a full disk, a closed
/// descriptor, a pipe without a reader) is remembered, so that the command can say so and not exit 0 as if its output had arrived.
enum FileStream {
    case standardOutput, standardError

    /// The errno of the first write to standard output that failed; 0 while none has.
    private static let outputErrno = Atomic<Int32>(0)

    func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(self == .standardOutput ? 1 : 2, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0, errno == EINTR { continue }
                guard written > 0 else {
                    // A zero-byte write with bytes left makes no progress: counted as the device being full.
                    let code = written == 0 ? ENOSPC : errno
                    if self == .standardOutput { _ = Self.outputErrno.compareExchange(expected: 0, desired: code, ordering: .relaxed) }
                    return
                }
                offset += written
            }
        }
    }

    /// Writes `text` and a newline.
    func writeLine(_ text: String) { write(text + "\n") }

    /// Why some of what was written to standard output was lost, or nil when nothing was:
    /// "No space left on device (errno 28)".
    static var lostOutput: String? {
        let code = outputErrno.load(ordering: .relaxed)
        return code == 0 ? nil : errnoText(code)
    }

    /// Opens /dev/null as each of descriptors 0, 1 and 2 that the caller left closed, before this process
    /// opens anything: a file opened later would otherwise take the number, and a report file opened as
    /// descriptor 1 would receive the table meant for standard output. Descriptor 1 is opened read-only,
    /// so writes to a closed standard output still fail (EBADF) and are reported.
    static func occupyClosedDescriptors() {
        for descriptor: Int32 in 0...2 where fcntl(descriptor, F_GETFD) < 0 && errno == EBADF {
            // open takes the lowest free number, this one: those below it are open by now.
            guard open("/dev/null", descriptor == 2 ? O_WRONLY : O_RDONLY) < 0 else { continue }
            standardError.write(
                "warning: descriptor \(descriptor) is closed and /dev/null cannot be opened in its place: \(errnoText(errno)); "
                    + "a file opened later may take its number\n")
            return
        }
    }
}

/// "No such file or directory (errno 2)" for `code`.
func errnoText(_ code: Int32) -> String { "\(String(cString: strerror(code))) (errno \(code))" }
