import GuardPages
import OverflowDetection
import Testing

/// Expects the overflow diagnostic in an exit test's standard error to name `label`, with the fault
/// `distance` bytes below the usable bottom, inside a guard of `guardSize` bytes.
func expectDiagnostic(
    _ result: ExitTest.Result?, label: String, distance: Int, guardSize: Int,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let text = String(decoding: try #require(result, sourceLocation: sourceLocation).standardErrorContent, as: UTF8.self)
    let diagnostic = try #require(OverflowDiagnostic(in: text), "no overflow diagnostic in: \(text)", sourceLocation: sourceLocation)
    #expect(diagnostic.label == label, "\(text)", sourceLocation: sourceLocation)
    #expect(diagnostic.distance == distance && (1...guardSize).contains(diagnostic.distance), "\(text)", sourceLocation: sourceLocation)
}
