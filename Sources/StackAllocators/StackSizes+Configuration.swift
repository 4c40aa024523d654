extension StackSizes {
    /// The sizes a configuration asks for; a bad size names its field (`type.usableField` or
    /// `type.guardField`), so a user sees which setting to change rather than a bare "invalid stack size".
    init(configured usable: Int, guardSize: Int, type: String, usableField: String, guardField: String)
        throws(StackError)
    {
        do {
            try self.init(usableSize: usable, guardSize: guardSize)
        } catch {
            switch error.reason {
            case .invalidSize(let requested, let reason):
                throw .invalidConfiguration(
                    type: type, field: usableField, value: "\(requested)",
                    allowed: "in 1...\(Self.maximumUsableSize) bytes once rounded up to the page size (\(reason))")
            case .invalidGuard(let requested, let reason):
                throw .invalidConfiguration(
                    type: type, field: guardField, value: "\(requested)",
                    allowed: "in 0...\(Self.maximumGuardSize) bytes, 0 for no guard (\(reason))")
            default:
                throw error
            }
        }
    }
}
