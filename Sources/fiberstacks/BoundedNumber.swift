import ArgumentParser

/// Parses a number a user typed, for `@Option(transform:)`: a value outside `range`, infinity, NaN, or
/// one the type cannot hold is a usage error (exit 64) that states the range.
func bounded<Value: LosslessStringConvertible & Comparable & Sendable>(
    _ range: ClosedRange<Value>
) -> @Sendable (String) throws -> Value {
    { text in
        guard let value = Value(text), range.contains(value) else {
            throw ValidationError("expected a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }
}
