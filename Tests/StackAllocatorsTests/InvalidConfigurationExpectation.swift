import StackAllocators
import Testing

/// Expects `body` to throw `.invalidConfiguration` naming `type.field` and `value`, with a text that
/// names both and says what the field accepts (`allowed` is a part of that).
func expectInvalidConfiguration(
    type: String, field: String, value: String, allowed: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(StackError) -> Void
) {
    do {
        try body()
        Issue.record("\(type).\(field) = \(value) was accepted", sourceLocation: sourceLocation)
    } catch {
        guard case .invalidConfiguration(let reportedType, let reportedField, let reportedValue, _) = error.reason else {
            Issue.record("got \(error)", sourceLocation: sourceLocation)
            return
        }
        #expect(
            reportedType == type && reportedField == field && reportedValue == value, sourceLocation: sourceLocation)
        #expect(error.description.contains("\(type).\(field) \(value)"), "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains(allowed), "\(error)", sourceLocation: sourceLocation)
    }
}
