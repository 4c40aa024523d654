@_spi(Benchmarks) import GuardPages
import StackAllocators

/// What a machine may lack for a check to run. A check that cannot run skips and names the capability;
/// `verify --require CAP` turns such a skip into a failure.
package enum Capability: String, CaseIterable, Codable, Sendable {
    /// MADV_GUARD_INSTALL (Linux >= 6.13).
    case lightweightGuards = "lightweight-guards"
    /// PROT_NONE guards with mprotect.
    case mprotectGuards = "mprotect-guards"
    /// A hugetlbfs mount for a huge page size, with free pages.
    case hugetlbfs
    /// Anonymous hugetlb pages: a pool with free pages.
    case hugetlbAnonymous = "hugetlb-anonymous"
    /// Huge pages larger than 2 MiB (1 GiB on x86_64): a pool with free pages, and a hugetlbfs mount for them.
    case giganticPages = "gigantic-pages"
    /// Transparent huge pages (mode madvise or always).
    case thp
    /// libnuma and a readable NUMA topology.
    case numa
    /// Two or more NUMA nodes with memory.
    case multiNode = "multi-node"
    /// The SIGSEGV handler's diagnostic in a child that really faults.
    case overflowDiagnostic = "overflow-diagnostic"
    /// Permission to change the machine (`--allow-machine-changes`, root): fill a node, resize pools.
    case machineChanges = "machine-changes"
    /// Map lines and resident memory that are the process's own: no sanitizer runtime mapping memory.
    case processAccounting = "process-accounting"

    package static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// How a check ended.
package enum CheckStatus: String, Codable, Sendable {
    case pass, fail, skip
}

/// A check body's way to say it cannot run here: recorded as a skip naming `capability`.
package struct CheckSkipped: Error {
    package let capability: Capability
    package let reason: String

    package init(_ capability: Capability, _ reason: String) {
        self.capability = capability
        self.reason = reason
    }
}

/// One verified property.
package struct VerifyCheck: Codable, Sendable {
    package let name: String
    package let allocator: String
    package let status: CheckStatus
    package let detail: String
    /// What a skipped check lacked.
    package let capability: Capability?
    /// How long the check ran.
    package let seconds: Double
}

/// Everything `verify` found. Checks add rows with `check`, `add` and `skip`; `observer` sees each
/// check start and end (the CLI prints rows as they end and bounds each check's time).
package struct VerifyReport: Sendable {
    /// The default time limit of a check, in seconds.
    package static let defaultTimeLimit = 120.0

    package private(set) var checks: [VerifyCheck] = []
    /// Capabilities whose absence is a failure, not a skip.
    package var required: Set<Capability> = []
    package var observer: VerifyObserver?

    package init() {}

    /// The guard modes a check runs with (`GuardMode.forcible`); where lightweight guards are missing,
    /// records the check `name` of `allocator` as skipped for lack of them.
    package mutating func guardModes(skipping name: String, _ allocator: String) -> [GuardMode] {
        if !GuardInstaller.lightweightGuardsSupported {
            skip(name, allocator, lacking: .lightweightGuards, GuardInstaller.lightweightGuards.missing ?? "")
        }
        return GuardMode.forcible
    }

    package var passed: Bool { !checks.contains { $0.status == .fail } }
    package func count(_ status: CheckStatus) -> Int { checks.filter { $0.status == status }.count }

    /// Records a check that passed or failed.
    package mutating func add(_ name: String, _ allocator: String, _ passed: Bool, _ detail: String, seconds: Double = 0) {
        append(VerifyCheck(name: name, allocator: allocator, status: passed ? .pass : .fail, detail: detail,
                           capability: nil, seconds: seconds))
    }

    /// Records a check that could not run for lack of `capability`: a failure when it is required.
    package mutating func skip(_ name: String, _ allocator: String, lacking capability: Capability, _ reason: String, seconds: Double = 0) {
        let required = self.required.contains(capability)
        append(VerifyCheck(
            name: name, allocator: allocator, status: required ? .fail : .skip,
            detail: required ? "required capability \(capability.rawValue) missing: \(reason)" : reason,
            capability: capability, seconds: seconds))
    }

    /// Runs `body` within `timeLimit` seconds (enforced by the observer, when there is one), recording
    /// its result; an error fails the check, naming it, unless it is `CheckSkipped`.
    package mutating func check(
        _ name: String, _ allocator: String, timeLimit: Double = defaultTimeLimit, _ body: () throws -> (Bool, String)
    ) {
        observer?.willStart(name: name, allocator: allocator, timeLimit: timeLimit)
        let start = monotonicSeconds()
        do {
            let (passed, detail) = try body()
            add(name, allocator, passed, detail, seconds: monotonicSeconds() - start)
        } catch let skipped as CheckSkipped {
            skip(name, allocator, lacking: skipped.capability, skipped.reason, seconds: monotonicSeconds() - start)
        } catch {
            add(name, allocator, false, "error: \(error)", seconds: monotonicSeconds() - start)
        }
    }

    /// Records a finished check.
    package mutating func append(_ check: VerifyCheck) {
        checks.append(check)
        observer?.didEnd(check)
    }
}

/// Sees each check start and end.
package struct VerifyObserver: Sendable {
    package let willStart: @Sendable (_ name: String, _ allocator: String, _ timeLimit: Double) -> Void
    package let didEnd: @Sendable (VerifyCheck) -> Void

    package init(
        willStart: @escaping @Sendable (_ name: String, _ allocator: String, _ timeLimit: Double) -> Void,
        didEnd: @escaping @Sendable (VerifyCheck) -> Void
    ) {
        self.willStart = willStart
        self.didEnd = didEnd
    }

    package func willStart(name: String, allocator: String, timeLimit: Double) { willStart(name, allocator, timeLimit) }
}

/// The JSON `verify --json` prints: versions, the summary and every check (keys sorted by the encoder).
package struct VerifyDocument: Encodable {
    /// Bumped when a key changes meaning or goes away.
    package static let schemaVersion = 2

    package let report: VerifyReport
    package let kernel: String

    package init(report: VerifyReport, kernel: String) {
        self.report = report
        self.kernel = kernel
    }

    package enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version", toolVersion = "tool_version", kernel, status, required, summary, checks
    }

    package struct Summary: Encodable {
        package let passed: Int
        package let failed: Int
        package let skipped: Int
        package let total: Int
    }

    package func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Self.schemaVersion, forKey: .schemaVersion)
        try container.encode(toolVersion, forKey: .toolVersion)
        try container.encode(kernel, forKey: .kernel)
        try container.encode(report.passed ? CheckStatus.pass : .fail, forKey: .status)
        try container.encode(report.required.map(\.rawValue).sorted(), forKey: .required)
        try container.encode(
            Summary(passed: report.count(.pass), failed: report.count(.fail), skipped: report.count(.skip),
                    total: report.checks.count), forKey: .summary)
        try container.encode(report.checks, forKey: .checks)
    }
}
