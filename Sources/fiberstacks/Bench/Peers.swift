import Foundation

/// The peer harness (scripts/peers/build/peers, built by scripts/build-peers), run in the same invocation.
enum Peers {
    /// What the harness printed, decoded.
    struct Report: Codable {
        let suite: String
        let results: [BenchResult]
    }

    /// Runs the harness at `path`; nil with a reason when it is missing or fails.
    static func run(path: String, quick: Bool) -> (Report?, String?) {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            return (nil, "peer harness not built at \(path): run scripts/build-peers (needs libboost-context-dev)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--json"] + (quick ? ["--quick"] : [])
        let pipe = Pipe()
        process.standardOutput = pipe
        do {
            try process.run()
        } catch {
            return (nil, "cannot run \(path): \(error)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            return (nil, "\(path) exited with status \(process.terminationStatus)")
        }
        do {
            return (try JSONDecoder().decode(Report.self, from: data), nil)
        } catch {
            return (nil, "cannot decode the output of \(path): \(error)")
        }
    }
}

/// One of ours over one of theirs, from the same run: below 1 means ours is faster.
struct BenchRatio: Codable {
    let ours: String
    let peer: String
    let ratio: Double
    let target: String
}

/// The pairs worth comparing, and what the issues expect of each.
enum RatioPlan {
    struct Pair {
        let section: String
        let ours: String
        let peerSection: String
        let peer: String
        let params: [String: Int]
        let target: String
    }

    static let pairs: [Pair] = [
        Pair(section: "stack_alloc", ours: "mmap_lightweight", peerSection: "stack_alloc",
             peer: "boost_protected_fixedsize_stack", params: ["size": 65536], target: "<= 0.67 (1.5x faster)"),
        Pair(section: "stack_alloc", ours: "mmap_lightweight", peerSection: "stack_alloc",
             peer: "mmap_mprotect", params: ["size": 65536], target: "<= 0.75"),
        Pair(section: "prefault", ours: "populate_4k", peerSection: "prefault",
             peer: "madv_populate_write_4k", params: [:], target: "~1 (same syscall)"),
        Pair(section: "prefault", ours: "touch_4k", peerSection: "prefault",
             peer: "touch_4k", params: [:], target: "~1"),
    ]

    /// Ratios for every pair present on both sides.
    static func ratios(ours: [BenchResult], peers: [BenchResult]) -> [BenchRatio] {
        pairs.compactMap { pair in
            func matches(_ result: BenchResult, _ section: String, _ name: String) -> Bool {
                result.section == section && result.name == name
                    && pair.params.allSatisfy { result.params[$0.key] == $0.value }
            }
            guard let mine = ours.first(where: { matches($0, pair.section, pair.ours) }),
                let theirs = peers.first(where: { matches($0, pair.peerSection, pair.peer) }),
                theirs.median > 0
            else { return nil }
            let label = pair.params.isEmpty ? "" : " " + pair.params.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ",")
            return BenchRatio(
                ours: "\(pair.section)/\(pair.ours)\(label)", peer: "\(pair.peerSection)/\(pair.peer)",
                ratio: mine.median / theirs.median, target: pair.target)
        }
    }
}
