import ArgumentParser

/// Parses a number a user typed, for `@Option(transform:)`: a value outside `range`, infinity, NaN, or
/// one the type cannot hold is a usage error (exit 64) that states the range.
func bounded<Value: LosslessStringConvertible & Comparable & Sendable>(
    _ range: ClosedRange<Value>
) -> @Sendable (String) throws -> Value {
    { text in
        guard let value = Value(text), range.contains(value) else {
            throw ValidationError("expected a number \(describe(range))")
        }
        return value
    }
}

/// "from 1 to 1000": a range as help texts and errors state it.
func describe<Value>(_ range: ClosedRange<Value>) -> String { "from \(range.lowerBound) to \(range.upperBound)" }
