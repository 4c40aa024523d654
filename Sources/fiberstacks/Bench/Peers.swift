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
