/// The censuses `checkMappingsRestored` compares, allocated together before the first is taken
/// (libFuzzer runs inputs on one thread).
private struct CensusPair {
    let before = MappingCensus()
    let after = MappingCensus()
}
nonisolated(unsafe) private let censuses = CensusPair()
/// The inputs run before the current one, oldest first (see `checkMappingsRestored`).
nonisolated(unsafe) private var earlierInputs: [[UInt8]] = []
private let earlierInputsKept = 3

/// Runs `body` (the whole sequence of `input`, which must give back everything it maps) and checks
/// that the process has as many mappings spanning as many bytes after it as before.
///
/// The sanitizer runtime maps memory of its own as the heap grows, so one difference is not yet a
/// leak: `body` runs a second time, and only a difference in both runs is a finding. A leak repeats with
/// its input; heap growth happens in the first run, when earlier inputs left too little free heap for
/// this one, and not again in the second, which reuses what the first freed. The finding names the
/// mappings that appeared and went away in each run, and, since the heap's growth depends on what ran
/// before, it also gives the last inputs this process ran (replay them first, in order, should the
/// reproducer pass alone). The target's sanitizer options must keep the runtime from mapping at other
/// moments (docs/fuzzing.md: no per-thread fake stacks or alternate signal stacks).
public func checkMappingsRestored(_ what: @autoclosure () -> String, input: UnsafeBufferPointer<UInt8>, _ body: () -> Void) {
    var differences: [String] = []
    for _ in 0..<2 {
        censuses.before.take()
        body()
        censuses.after.take()
        if censuses.after.matches(censuses.before) { break }
        differences.append(
            "before: \(censuses.before.summary), after: \(censuses.after.summary), new: \(censuses.after.lines(missingFrom: censuses.before)), gone: \(censuses.before.lines(missingFrom: censuses.after))"
        )
    }
    if differences.count == 2 {
        let earlier = earlierInputs.enumerated().map { "\($0.offset + 1): \($0.element.map(hexByte).joined())" }
        finding(
            "\(what()) left the process's mappings changed in two runs: \(differences.joined(separator: "; ")). "
                + "Inputs run before it, oldest first, in hex: [\(earlier.joined(separator: ", "))]")
    }
    earlierInputs.append(Array(input))
    if earlierInputs.count > earlierInputsKept { earlierInputs.removeFirst() }
}

private func hexByte(_ byte: UInt8) -> String {
    byte < 16 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
}
