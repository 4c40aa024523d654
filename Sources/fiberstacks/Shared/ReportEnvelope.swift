/// The top of every JSON report the tool prints: the report's shape (`schema_version`, raised when a
/// key changes meaning or disappears) and the tool that wrote it (`tool_version`), then the report's keys.
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
        try container.encode(toolVersion, forKey: .toolVersion)
        try report.encode(to: encoder)
    }
}
