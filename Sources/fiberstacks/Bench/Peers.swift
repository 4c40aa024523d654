import Foundation
import GuardPages
import StackDiagnostics

/// The peer harness (scripts/peers/build/peers, built by scripts/build-peers), run in the same invocation.
enum Peers {
    /// What the harness printed, decoded.
    struct Report: Codable {
        let suite: String
        let results: [BenchResult]
    }

    /// The longest the harness may run (its full run takes under a minute).
    static let timeLimit = 300.0

    /// Runs the harness at `path`; nil with a reason when it is missing, fails or runs past `timeLimit`.
    static func run(path: String, quick: Bool) -> (Report?, String?) {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            return (nil, "peer harness not built at \(path): run scripts/build-peers (needs libboost-context-dev)")
        }
        let child: ChildProcess.Outcome
        do {
            child = try ChildProcess.run(path, ["--json"] + (quick ? ["--quick"] : []), timeLimit: timeLimit)
        } catch {
            return (nil, "\(error)")
        }
        guard child.status == 0 else {
            return (nil, "\(path) ended with \(child.ending): \(child.standardError.suffix(300))")
        }
        do {
            return (try JSONDecoder().decode(Report.self, from: Data(child.standardOutput.utf8)), nil)
        } catch {
            return (nil, "cannot decode the output of \(path): \(error)")
        }
    }
}
