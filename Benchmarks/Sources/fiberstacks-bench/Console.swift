import ArgumentParser
import Foundation
import Glibc

/// Unbuffered writes to a standard stream.
enum FileStream {
    case standardOutput, standardError

    func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(self == .standardOutput ? 1 : 2, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }
}

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

/// The top of the JSON report: its shape (`schema_version`) and the version of FiberStacks
/// (`tool_version`), then the report's keys.
struct ReportEnvelope<Report: Encodable>: Encodable {
    let schemaVersion: Int
    let report: Report

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case toolVersion = "tool_version"
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(schemaVersion, forKey: .schemaVersion)
        try container.encode(Bench.version, forKey: .toolVersion)
        try report.encode(to: encoder)
    }
}

/// Pretty-printed JSON with sorted keys.
func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
