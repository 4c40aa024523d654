import CFuzzSupport

/// The process's mappings, from one read of /proc/self/maps into memory allocated once, so that taking
/// a census maps nothing itself.
///
/// Read by a C helper that is not instrumented for coverage and does not allocate, so taking a census
/// adds no noise to the fuzzer's coverage and no mapping of its own.
final class MappingCensus {
    /// More mappings than any input makes (64 live stacks with two each, the sanitizers' few hundred).
    static let capacity = 16384

    private let storage = UnsafeMutableBufferPointer<fz_mapping>.allocate(capacity: capacity)
    /// Mappings (VMAs) at the last `take()`.
    private(set) var count = 0

    deinit { storage.deallocate() }

    /// Reads /proc/self/maps now.
    func take() {
        let code = fz_mapping_snapshot(storage.baseAddress!, Self.capacity, &count)
        check(code == 0, "cannot read /proc/self/maps: errno \(code)")
    }

    var mappings: Slice<UnsafeMutableBufferPointer<fz_mapping>> { storage[0..<count] }

    /// Bytes of address space the mappings span: also catches a leaked mapping that merged with a
    /// neighbour and so left the count unchanged.
    var bytes: UInt { mappings.reduce(0) { $0 + ($1.high - $1.low) } }

    /// Whether both have as many mappings spanning as many bytes.
    func matches(_ other: MappingCensus) -> Bool { count == other.count && bytes == other.bytes }

    /// The lines of `self` that `other` lacks.
    func lines(missingFrom other: MappingCensus) -> [String] {
        mappings.filter { mapping in !other.mappings.contains { $0.isSame(as: mapping) } }.map(\.line)
    }

    var summary: String { "\(count) mappings, \(bytes) bytes" }
}

extension fz_mapping {
    /// Whether both are the same range with the same permissions and name.
    func isSame(as other: fz_mapping) -> Bool {
        low == other.low && high == other.high && permissions == other.permissions && text(name) == text(other.name)
    }

    /// The line as /proc/self/maps writes it, less offset, device and inode, with the size in bytes.
    var line: String {
        "\(String(low, radix: 16))-\(String(high, radix: 16)) \(text(permissions)) \(high - low) B \(text(name))"
    }

    private func text<T>(_ field: T) -> String {
        withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
