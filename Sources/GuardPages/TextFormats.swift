import Glibc

/// 2 MiB -> "2 MiB", 65536 -> "64 KiB", 1 GiB -> "1 GiB"; bytes when not a whole number of units.
package func formatByteCount(_ bytes: Int) -> String {
    wholeUnits(bytes, units: ["GiB", "MiB", "KiB"], separator: " ") ?? "\(bytes) B"
}

/// A page size in the syntax of hugetlbfs's `pagesize=` mount option: "2M", "1G", "64K" (`parseSize` reads it back).
package func formatSizeOption(_ bytes: Int) -> String {
    wholeUnits(bytes, units: ["G", "M", "K"], separator: "") ?? "\(bytes)"
}

/// `bytes` in the largest of GiB, MiB, KiB (named by `units`, largest first) that divides it, or nil.
private func wholeUnits(_ bytes: Int, units: [String], separator: String) -> String? {
    for (shift, unit) in zip([30, 20, 10], units) where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
        return "\(bytes >> shift)\(separator)\(unit)"
    }
    return nil
}

/// "0-3,5" -> [0, 1, 2, 3, 5]. Malformed parts are skipped.
package func parseCPUList(_ text: String) -> [Int] {
    text.split(whereSeparator: { $0 == "," || $0.isWhitespace }).flatMap { part -> [Int] in
        let bounds = part.split(separator: "-").compactMap { Int($0) }
        switch bounds.count {
        case 1: return bounds
        case 2 where bounds[0] <= bounds[1]: return Array(bounds[0]...bounds[1])
        default: return []
        }
    }
}

/// "2M", "1G", "2048k", "4096" -> bytes.
package func parseSize<S: StringProtocol>(_ text: S) -> Int? {
    let units: [Character: Int] = ["k": 10, "K": 10, "m": 20, "M": 20, "g": 30, "G": 30]
    guard let last = text.last else { return nil }
    if let shift = units[last] { return Int(text.dropLast()).map { $0 << shift } }
    return Int(text)
}

/// "always [madvise] never" -> "madvise".
package func bracketedChoice(_ text: String) -> String? {
    guard let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]"), open < close else { return nil }
    return String(text[text.index(after: open)..<close])
}

/// Names in a directory, without "." and "..". Empty when it cannot be read.
package func directoryEntries(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}
