@_spi(Benchmarks) import GuardPages
import StackAllocators

/// One multi-node check: its name, how it ended, what it saw, and the page counts behind it.
package struct NUMACheckResult: Codable {
    package let name: String
    package let status: CheckStatus
    package let detail: String
    package let counts: [String: Int]
    /// What a skipped check lacked.
    package let capability: Capability?
}

/// Everything `numa-check` found, with the topology it ran on.
package struct NUMACheckReport: Codable {
    /// No check failed (skips allowed).
    package var passed: Bool { !checks.contains { $0.status == .fail } }
    package var kernel = kernelRelease
    package var topology: NUMATopology?
    package private(set) var checks: [NUMACheckResult] = []

    /// Records a check.
    package mutating func add(_ name: String, _ passed: Bool, _ detail: String, counts: [String: Int] = [:]) {
        checks.append(NUMACheckResult(name: name, status: passed ? .pass : .fail, detail: detail, counts: counts, capability: nil))
    }

    /// Records a check that could not run for lack of `capability`.
    package mutating func skip(_ name: String, lacking capability: Capability, _ reason: String) {
        checks.append(NUMACheckResult(name: name, status: .skip, detail: reason, counts: [:], capability: capability))
    }

    /// Runs `body`, recording its result, or a failed check naming the error it threw.
    package mutating func check(_ name: String, _ body: () throws -> (Bool, String, [String: Int])) {
        do {
            let (passed, detail, counts) = try body()
            add(name, passed, detail, counts: counts)
        } catch let skipped as CheckSkipped {
            skip(name, lacking: skipped.capability, skipped.reason)
        } catch {
            add(name, false, "error: \(error)")
        }
    }

    package enum CodingKeys: String, CodingKey { case passed, kernel, topology, checks }

    package func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(passed, forKey: .passed)
        try container.encode(kernel, forKey: .kernel)
        try container.encodeIfPresent(topology, forKey: .topology)
        try container.encode(checks, forKey: .checks)
    }

    package init() {}

    package init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        kernel = try container.decode(String.self, forKey: .kernel)
        topology = try container.decodeIfPresent(NUMATopology.self, forKey: .topology)
        checks = try container.decode([NUMACheckResult].self, forKey: .checks)
    }
}

extension PlacementReport {
    /// The figures a check reports: pages, present, notPresent, and `nodeN` per node.
    package var counts: [String: Int] {
        var counts = ["pages": pages, "present": present, "notPresent": notPresent]
        for (node, count) in pagesPerNode { counts["node\(node)"] = count }
        return counts
    }
}
