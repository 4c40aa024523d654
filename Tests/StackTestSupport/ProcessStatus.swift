import GuardPages

/// A size field of /proc/self/status (VmRSS, VmSize, ...), in bytes: the kernel's own account.
public func processStatusBytes(_ field: String) throws -> Int {
    let status = try SystemFile.read("/proc/self/status")
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
        let kibibytes = line.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap({ Int($0) })
    else { throw StackError.capabilityMissing("a \(field) line in /proc/self/status", fix: "mount /proc") }
    return kibibytes << 10
}
