import CFuzzSupport

/// How many mappings the process has and how many bytes they span, from one read of /proc/self/maps.
///
/// `count` is what `MapCount.current()` reports; `bytes` also catches a leaked mapping that merged
/// with a neighbour and so left the count unchanged. Read by a C helper that is not instrumented for
/// coverage and does not allocate, so taking a census adds no noise to the fuzzer's coverage and
/// no mapping of its own.
public struct MappingCensus: Sendable, Hashable, CustomStringConvertible {
    /// Mappings (VMAs).
    public let count: Int
    /// Bytes of address space they span.
    public let bytes: UInt

    /// The census now.
    public static func now() -> MappingCensus {
        var count = 0
        var bytes: UInt = 0
        let code = fz_mapping_census(&count, &bytes)
        check(code == 0, "cannot read /proc/self/maps: errno \(code)")
        return MappingCensus(count: count, bytes: bytes)
    }

    public var description: String { "\(count) mappings, \(bytes) bytes" }
}

/// Runs `body` (an input's whole sequence, which must give back everything it maps) and checks that
/// the process has the same mappings after it as before.
///
/// The sanitizers map and unmap memory on their own (ASan's allocator grows, libFuzzer's buffers), so
/// one difference is not yet a leak: `body` runs a second time, and only a difference in both runs is a
/// finding. A leak repeats with its input; allocator growth almost never happens in two runs in a row.
public func checkMappingsRestored(_ what: @autoclosure () -> String, _ body: () -> Void) {
    var differences: [String] = []
    for _ in 0..<2 {
        let before = MappingCensus.now()
        body()
        let after = MappingCensus.now()
        if after == before { return }
        differences.append("before: \(before), after: \(after)")
    }
    finding("\(what()) left the process's mappings changed in two runs: \(differences.joined(separator: "; "))")
}
