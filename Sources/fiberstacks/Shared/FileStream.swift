import Glibc

/// Unbuffered writes to a standard stream.
enum FileStream {
    case standardOutput, standardError

    func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(self == .standardOutput ? 1 : 2, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }
}
