/// The top of every JSON report the tool prints: the report's shape (`schema_version`, raised when a
/// key changes meaning or disappears) and the tool that wrote it (`tool_version`), then the report's keys.
@_spi(Benchmarks) public struct ReportEnvelope<Report: Encodable>: Encodable {
    @_spi(Benchmarks) public let schemaVersion: Int
    @_spi(Benchmarks) public let report: Report

    @_spi(Benchmarks) public init(schemaVersion: Int, report: Report) {
        self.schemaVersion = schemaVersion
        self.report = report
    }

    @_spi(Benchmarks) public enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case toolVersion = "tool_version"
    }

    @_spi(Benchmarks) public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(schemaVersion, forKey: .schemaVersion)
        try container.encode(toolVersion, forKey: .toolVersion)
        try report.encode(to: encoder)
    }
}

/// The package's version: `fiberstacks --version`, and `tool_version` in every JSON report.
package let toolVersion = "0.1.0"
