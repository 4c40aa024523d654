import ArgumentParser
import Glibc

/// `fiberstacks bench`: runs the benchmark executable of the Benchmarks package with the same arguments
/// (it measures our figures and the peers' in one process; docs/benchmarks.md). The executable is
/// `$FIBERSTACKS_BENCH`, or `Benchmarks/.build/release/fiberstacks-bench` in the checkout this tool was
/// built from. When it is missing, the command fails with exit 70 and names the build command.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark stacks, pools, switches and the scheduler next to their peers, in one process "
            + "(runs fiberstacks-bench; build it with `\(buildCommand)`).",
        discussion: "Every option is passed to fiberstacks-bench: run `fiberstacks bench --help-bench` for them.")

    @Argument(parsing: .allUnrecognized, help: "Options for fiberstacks-bench (--quick, --check, --svg FILE, ...).")
    var arguments: [String] = []

    /// The build command, from the checkout's root.
    static let buildCommand = "swift build -c release --package-path Benchmarks"

    /// The checkout this tool was built from: three levels above this file.
    static let checkoutRoot: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    /// Where the benchmark executable is.
    static func executablePath() -> String {
        if let path = getenv("FIBERSTACKS_BENCH").map({ String(cString: $0) }), !path.isEmpty { return path }
        return "\(checkoutRoot)/Benchmarks/.build/release/fiberstacks-bench"
    }

    func run() throws {
        let path = Self.executablePath()
        guard access(path, X_OK) == 0 else {
            throw BenchNotBuilt(path: path, reason: String(cString: strerror(errno)))
        }
        // `--help-bench` shows the benchmark's own help.
        let forwarded = arguments.map { $0 == "--help-bench" ? "--help" : $0 }
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + forwarded).map { strdup($0) } + [nil]
        execv(path, &argv)
        let reason = String(cString: strerror(errno))
        for pointer in argv { free(pointer) }
        throw BenchNotBuilt(path: path, reason: "execv failed: \(reason)")
    }
}

/// The benchmark executable is missing or cannot run (exit 70).
struct BenchNotBuilt: Error, CustomStringConvertible {
    let path: String
    let reason: String

    var description: String {
        "fiberstacks bench: the benchmark executable \(path) cannot run (\(reason)). Build it from the checkout "
            + "with `cd \(Bench.checkoutRoot) && \(Bench.buildCommand)` (it needs libboost-context-dev and "
            + "libboost-fiber-dev: ./scripts/setup --bench), or set FIBERSTACKS_BENCH to its path."
    }
}
