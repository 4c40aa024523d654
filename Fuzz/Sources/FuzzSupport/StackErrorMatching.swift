import GuardPages

extension StackError {
    /// A size error as a model predicts it: the code and the requested value, without the prose reason.
    public static func sizeError(_ code: Code, requested: Int) -> StackError {
        StackError(code: code, message: "requested \(requested)")
    }

    /// A configuration error as a model predicts it: the type and the field it names.
    public static func configurationError(type: String, field: String) -> StackError {
        StackError(code: .invalidConfiguration, message: "invalid \(type).\(field)")
    }

    /// Whether `self` is the error a model expects: the same code with the same requested value for the
    /// size errors (their reasons are prose, which models do not predict), equal otherwise.
    public func matches(_ expected: StackError) -> Bool {
        switch expected.code {
        case .invalidPageSize, .invalidSize, .invalidGuard:
            return code == expected.code && firstInteger(in: message) == firstInteger(in: expected.message)
        case .invalidConfiguration:
            // "invalid TYPE.FIELD VALUE: ...": the type and the field, not the allowed range's prose.
            return code == expected.code && message.hasPrefix(expected.message + " ")
        default:
            return self == expected
        }
    }

    /// Whether `self` is a size error (`code`) for `requested`.
    public func isSizeError(_ code: Code, requested: Int) -> Bool {
        matches(.sizeError(code, requested: requested))
    }
}

/// The first integer in `text` (with its sign), or nil.
private func firstInteger(in text: String) -> Int? {
    let characters = Array(text)
    for index in characters.indices where characters[index].isNumber {
        var start = index
        if start > 0, characters[start - 1] == "-" { start -= 1 }
        let digits = characters[index...].prefix { $0.isNumber }
        return Int(String(characters[start..<index]) + String(digits))
    }
    return nil
}
