import CPeers

/// One contender of a comparison: our figure or a peer's, timed for one repetition at a time.
struct Contender {
    let source: FigureKey.Source
    let name: String
    var params: [String: Int] = [:]
    var unit = "ns"
    /// For a peer: what differs from ours ("guard_size: 4096 vs 65536"); empty when everything matches.
    var unmatched: [String] = []
    /// Operations per repetition, where a peer cannot do as many as ours (then `unmatched` says so).
    var opsPerRep: Int?
    /// One repetition: the value per operation (nanoseconds, or `unit`).
    let repetition: () throws -> Double

    static func ours(_ name: String, _ params: [String: Int] = [:], unit: String = "ns", _ repetition: @escaping () throws -> Double) -> Contender {
        Contender(source: .ours, name: name, params: params, unit: unit, repetition: repetition)
    }

    static func peer(
        _ name: String, _ params: [String: Int] = [:], unit: String = "ns", unmatched: [String] = [], opsPerRep: Int? = nil,
        _ repetition: @escaping () throws -> Double
    ) -> Contender {
        Contender(
            source: .peers, name: name, params: params, unit: unit, unmatched: unmatched, opsPerRep: opsPerRep,
            repetition: repetition)
    }
}

extension BenchRecorder {
    /// Measures `contenders` alternating within every repetition (ours, peer A, peer B, ours, ...), with
    /// the same repetition count, so outside load hits them alike; records each with `opsPerRep`.
    func contest(_ section: BenchSection, opsPerRep: Int, _ contenders: [Contender]) throws {
        let params = (contenders.first?.params ?? [:]).sorted { $0.key < $1.key }.map { " \($0.key)=\(formatParameter($0.value))" }
        progress("\(section.rawValue)\(params.joined()): " + contenders.map { "\($0.source == .ours ? "" : "peer ")\($0.name)" }.joined(separator: ", "))
        let columns = try measureFigures(scale) { try contenders.map { try $0.repetition() } }
        for (contender, samples) in zip(contenders, columns) {
            let result = BenchResult(
                section: section, name: contender.name, params: contender.params, unit: contender.unit,
                samples: samples, opsPerRep: contender.opsPerRep ?? opsPerRep, unmatched: contender.source == .peers ? contender.unmatched : nil)
            if contender.source == .ours { add(result) } else { addPeer(result) }
        }
    }
}

/// The nanoseconds a C peer returned, or its failure (`-1` and `fs_peer_error()`) as an error naming it.
func peerNanoseconds(_ name: String, _ call: () -> Int64) throws -> Double {
    let elapsed = call()
    guard elapsed >= 0 else { throw BenchFailure("peer \(name): \(String(cString: fs_peer_error()))") }
    return Double(elapsed)
}

/// A C peer's object (a pool, a context, a thread set), or its failure as an error naming it.
func peerObject(_ name: String, _ make: () -> UnsafeMutableRawPointer?) throws -> UnsafeMutableRawPointer {
    guard let object = make() else { throw BenchFailure("peer \(name): \(String(cString: fs_peer_error()))") }
    return object
}
