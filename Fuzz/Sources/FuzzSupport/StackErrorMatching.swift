import GuardPages

/// Which size a size error names, as its message words it.
public enum SizeKind: String, Sendable {
    case stack = "stack size"
    case guardSize = "guard size"
    case page = "page size"
}

extension StackError {
    /// A size error as a model predicts it: which size and the requested value, without the prose reason.
    public static func sizeError(_ kind: SizeKind, requested: Int) -> StackError {
        StackError(code: .invalidArgument, message: "invalid \(kind.rawValue) \(requested)")
    }

    /// A configuration error as a model predicts it: the type and the field it names.
    public static func configurationError(type: String, field: String) -> StackError {
        StackError(code: .invalidArgument, message: "invalid \(type).\(field)")
    }

    /// Whether `self` is the error a model expects. For bad input, what the message names ("invalid stack
    /// size 4096", "invalid TYPE.FIELD") up to the prose reason, which models do not predict; equal otherwise.
    public func matches(_ expected: StackError) -> Bool {
        guard expected.code == .invalidArgument else { return self == expected }
        return code == .invalidArgument
            && (message == expected.message || message.hasPrefix(expected.message + ":") || message.hasPrefix(expected.message + " "))
    }

    /// Whether `self` is a size error naming `kind` and `requested`.
    public func isSizeError(_ kind: SizeKind, requested: Int) -> Bool {
        matches(.sizeError(kind, requested: requested))
    }
}

