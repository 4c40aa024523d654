import ArgumentParser

/// Parses a decimal number a user typed, for `@Option(transform:)`: a value outside `range`, infinity,
/// NaN, hexadecimal, or one the type cannot hold is a usage error (exit 64) that states the range.
func bounded<Value: LosslessStringConvertible & Comparable & Sendable>(
    _ range: ClosedRange<Value>
) -> @Sendable (String) throws -> Value {
    { text in
        // Decimal only: Double's parser also takes hexadecimal ("0x10", "0x1p3"), which no one means here.
        guard !text.lowercased().contains("x"), let value = Value(text), range.contains(value) else {
            throw ValidationError("expected a number \(describe(range))")
        }
        return value
    }
}

/// "from 1 to 1000": a range as help texts and errors state it.
func describe<Value>(_ range: ClosedRange<Value>) -> String { "from \(range.lowerBound) to \(range.upperBound)" }
