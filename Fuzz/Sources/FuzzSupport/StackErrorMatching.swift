import GuardPages

extension StackError {
    /// Whether `self` is the error a model expects: the same case with the same requested value for the
    /// size errors (their reasons are prose, which models do not predict), equal otherwise.
    public func matches(_ expected: StackError) -> Bool {
        switch (self, expected) {
        case (.invalidPageSize(let a, _), .invalidPageSize(let b, _)),
            (.invalidSize(let a, _), .invalidSize(let b, _)),
            (.invalidGuard(let a, _), .invalidGuard(let b, _)):
            return a == b
        case (.invalidConfiguration(let type, let field, _, _), .invalidConfiguration(let expectedType, let expectedField, _, _)):
            return type == expectedType && field == expectedField
        default:
            return self == expected
        }
    }
}
