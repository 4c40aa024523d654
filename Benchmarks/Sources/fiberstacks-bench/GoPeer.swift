import Foundation
import Glibc
@_spi(Benchmarks) import StackDiagnostics

/// The Go peer of the `suspended` section: Benchmarks/GoPeer (goroutines blocked on one channel,
/// `GOMAXPROCS=2`), built with the `go` on PATH into a temporary directory once per run and run as a
/// child process with a time limit. The build never reaches the network: the program uses the standard
/// library only, and `GOPROXY=off`, `GOTOOLCHAIN=local` keep `go` from downloading anything.
enum GoPeer {
    /// Why the peer did not run, with the fix: the reason of its skip.
    struct Unavailable: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// What a run measured: the program's figures (named like ours) and the Go release that built it.
    struct Figures {
        let values: [String: Double]
        let goVersion: String
    }

    /// The figures the program must report, named as ours are.
    static let figureNames = [
        "jobs", "suspend_s", "resume_s", "rss_per_fiber_bytes", "page_table_bytes", "shutdown_s", "rss_after_ratio",
        "anon_after_bytes",
    ]

    /// How ours and Go's differ beyond the params they share (`jobs`, `workers`).
    static let unmatched = [
        "size: a growable goroutine stack (2 KiB at first, copied to a larger one as it grows) vs 65536",
        "guard_size: none (each Go function checks the stack bound in its prologue) vs 65536",
    ]

    /// How to get Go.
    static let install = "Debian: apt-get install golang-go, or scripts/setup --bench"

    /// The longest `go build` may take.
    static let buildTimeLimit = 300.0

    /// Benchmarks/GoPeer in the checkout this benchmark was built from: three levels above this file.
    static let sourceDirectory: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return (parts + ["GoPeer"]).joined(separator: "/")
    }()

    /// Builds the program and runs it with `jobs` goroutines; `timeLimit` bounds each of its two waits
    /// (all blocked, all finished).
    static func measure(jobs: Int, timeLimit: Double) throws(Unavailable) -> Figures {
        guard let go = executableOnPath("go") else {
            throw Unavailable("go is not installed or not on PATH (\(install)); the Go peer runs only where it is")
        }
        guard access("\(sourceDirectory)/main.go", R_OK) == 0 else {
            throw Unavailable("the Go peer's source \(sourceDirectory)/main.go cannot be read (\(String(cString: strerror(errno)))): "
                + "run the fiberstacks-bench built from a complete FiberStacks checkout")
        }
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let binary = "\(directory)/gopeer"
        let build = try run(
            go, ["build", "-o", binary, "."], environment: buildEnvironment(scratch: directory),
            workingDirectory: sourceDirectory, timeLimit: buildTimeLimit, what: "go build of the Go peer")
        guard build.status == 0 else {
            throw Unavailable("go build of the Go peer (\(sourceDirectory)) failed, \(build.ending): "
                + "\(firstError(build.standardError)); it needs Go 1.18 or newer (\(install))")
        }
        let child = try run(
            binary, ["-jobs", "\(jobs)", "-time-limit", "\(Int(timeLimit))s"], environment: [:], workingDirectory: nil,
            timeLimit: 2 * timeLimit + 30, what: "the Go peer")
        guard child.status == 0 else {
            throw Unavailable("the Go peer failed, \(child.ending): \(firstError(child.standardError))")
        }
        return try figures(child.standardOutput)
    }

    /// Runs a child, turning a failure to start it or its time limit into the reason of the skip.
    private static func run(
        _ path: String, _ arguments: [String], environment: [String: String], workingDirectory: String?,
        timeLimit: Double, what: String
    ) throws(Unavailable) -> ChildProcess.Outcome {
        let outcome: ChildProcess.Outcome
        do {
            outcome = try ChildProcess.run(
                path, arguments, environment: environment, workingDirectory: workingDirectory, timeLimit: timeLimit)
        } catch {
            throw Unavailable("\(what): \(error)")
        }
        guard !outcome.timedOut else {
            throw Unavailable("\(what) ran past its \(Int(timeLimit)) s limit and was killed; "
                + "stderr: \(firstError(outcome.standardError))")
        }
        return outcome
    }

    /// The environment of `go build`: modules on, nothing downloaded, no newer toolchain fetched, no cgo
    /// (the program needs no C compiler), no version-control stamp (git refuses to read a checkout another
    /// user owns, and go build would fail on it). Where `GOCACHE` or `GOPATH` is unset and HOME is not writable,
    /// `go` would fail to make its cache there: they go to `scratch`, removed after the run.
    static func buildEnvironment(scratch: String) -> [String: String] {
        var environment = ["GOFLAGS": "-mod=mod -buildvcs=false", "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOWORK": "off", "CGO_ENABLED": "0"]
        let home = getenv("HOME").map { String(cString: $0) } ?? ""
        guard home.isEmpty || access(home, W_OK) != 0 else { return environment }
        for key in ["GOCACHE", "GOPATH"] where (getenv(key).map { String(cString: $0) } ?? "").isEmpty {
            environment[key] = "\(scratch)/\(key.lowercased())"
            benchLogger.info("\(key) is unset and HOME (\(home.isEmpty ? "unset" : home)) is not writable: go build uses \(scratch)")
        }
        return environment
    }

    /// The program's JSON object: every figure of `figureNames`, and `go_version`.
    static func figures(_ output: String) throws(Unavailable) -> Figures {
        let object = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        let values = object.map { object in
            Dictionary(uniqueKeysWithValues: figureNames.compactMap { name in (object[name] as? Double).map { (name, $0) } })
        } ?? [:]
        guard values.count == figureNames.count, let version = object?["go_version"] as? String else {
            throw Unavailable("the Go peer printed no complete report (\(figureNames.joined(separator: ", ")), go_version): "
                + "\(firstError(output))")
        }
        return Figures(values: values, goVersion: version)
    }

    /// The first line of a compiler's or program's error output that says something (go build first
    /// prints `# package`); "no output" when there is none.
    static func firstError(_ text: String) -> String {
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        return lines.first { !$0.isEmpty && !$0.hasPrefix("#") }.map { String($0.prefix(300)) } ?? "no output"
    }

    /// The first executable `name` in a directory of PATH.
    static func executableOnPath(_ name: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? ""
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A new private directory under TMPDIR (or /tmp).
    private static func temporaryDirectory() throws(Unavailable) -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/fiberstacks-gopeer-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw Unavailable("cannot make a temporary directory in \(base) for the Go peer (\(String(cString: strerror(errno)))): "
                + "set TMPDIR to a writable directory")
        }
        return String(cString: made)
    }

    /// Removes the temporary directory and everything in it; a failure is logged, not fatal.
    private static func remove(_ directory: String) {
        do {
            try FileManager.default.removeItem(atPath: directory)
        } catch {
            benchLogger.warning("cannot remove the Go peer's temporary directory \(directory): \(error)")
        }
    }
}
