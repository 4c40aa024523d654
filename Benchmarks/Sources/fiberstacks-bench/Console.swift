import Foundation

// FileStream, bounded(_:) and describe(_:) come from Shared/, a link to
// the fiberstacks tool's Sources/fiberstacks/Shared.

/// Pretty-printed JSON with sorted keys.
func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
