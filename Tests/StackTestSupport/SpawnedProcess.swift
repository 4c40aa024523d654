import Glibc

/// How a child started with `spawnAndWait` ended, and what it wrote.
public struct SpawnedRun: Sendable {
    /// The exit status, when it exited.
    public let exitStatus: Int32?
    /// The signal that killed it, when one did (SIGKILL after the time limit).
    public let signal: Int32?
    /// Whether the time limit ran out and the child was killed.
    public let timedOut: Bool
    /// Standard output and standard error, interleaved as written.
    public let output: String
}

/// Runs `path` with `arguments` through posix_spawn, its standard output and error into one temporary
/// file, and waits at most `seconds` (then kills it with SIGKILL). Foundation's `Process` is avoided:
/// its wait can hang forever on a minimal system.
public func spawnAndWait(_ path: String, _ arguments: [String], seconds: Double) throws -> SpawnedRun {
    var template = Array("/tmp/fiberstacks-spawn-XXXXXX".utf8CString)
    let file = mkstemp(&template)
    guard file >= 0 else { throw SpawnError("mkstemp failed: errno \(errno)") }
    let outputPath = String(cString: template)
    defer {
        close(file)
        unlink(outputPath)
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, file, 1)
    posix_spawn_file_actions_adddup2(&actions, file, 2)
    var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid = pid_t()
    let spawned = posix_spawn(&pid, path, &actions, nil, &argv, environ)
    guard spawned == 0 else { throw SpawnError("posix_spawn of \(path) failed: errno \(spawned)") }

    var status: Int32 = 0
    var timedOut = false
    let deadline = monotonicSeconds() + seconds
    while true {
        let waited = waitpid(pid, &status, WNOHANG)
        if waited == pid { break }
        if waited < 0 && errno != EINTR { throw SpawnError("waitpid failed: errno \(errno)") }
        if monotonicSeconds() > deadline && !timedOut {
            timedOut = true
            kill(pid, SIGKILL)
        }
        usleep(10_000)
    }
    let output = readAll(file)
    let signaled = status & 0x7F != 0 && status & 0x7F != 0x7F
    return SpawnedRun(
        exitStatus: signaled ? nil : (status >> 8) & 0xFF, signal: signaled ? status & 0x7F : nil,
        timedOut: timedOut, output: output)
}

/// A spawn or wait that failed before the child could run or be reaped.
public struct SpawnError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

private func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Everything in `file`, from its start.
private func readAll(_ file: Int32) -> String {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    var offset: off_t = 0
    while true {
        let count = buffer.withUnsafeMutableBytes { pread(file, $0.baseAddress, $0.count, offset) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { break }
        bytes += buffer[0..<count]
        offset += off_t(count)
    }
    return String(decoding: bytes, as: UTF8.self)
}
