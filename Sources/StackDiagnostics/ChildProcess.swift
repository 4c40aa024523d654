import CStackSupport
import GuardPages
import Glibc
import SystemPackage

/// Runs a program as a child process with posix_spawn, captures its standard output and error through
/// pipes, and waits for it with a time limit: past the limit it gets SIGTERM, then SIGKILL after a grace
/// period. Foundation's `Process` is not used: on a minimal Linux (a busybox initramfs) its
/// `waitUntilExit` never returns. The benchmarks run their Go peer with it.
@_spi(Benchmarks) public enum ChildProcess {
    /// How a child ended and what it printed.
    @_spi(Benchmarks) public struct Outcome: Sendable {
        /// The exit status, when it exited.
        @_spi(Benchmarks) public let status: Int32?
        /// The signal that ended it, when one did.
        @_spi(Benchmarks) public let signal: Int32?
        /// Whether it ran past its time limit (and was killed for it).
        @_spi(Benchmarks) public let timedOut: Bool
        /// Standard output, decoded as UTF-8.
        @_spi(Benchmarks) public let standardOutput: String
        /// Standard error, decoded as UTF-8.
        @_spi(Benchmarks) public let standardError: String

        /// "exit 0", "signal 11", "killed after its time limit".
        @_spi(Benchmarks) public var ending: String {
            if timedOut { return "killed after its time limit" }
            return signal.map { "signal \($0)" } ?? "exit \(status ?? -1)"
        }
    }

    /// A child that could not be started or watched.
    @_spi(Benchmarks) public struct Failure: Error, CustomStringConvertible {
        /// The call that failed.
        @_spi(Benchmarks) public let call: String
        @_spi(Benchmarks) public let errno: Errno
        @_spi(Benchmarks) public let program: String
        /// For EAGAIN, the task limit reached (`TaskLimit.explanation()`, read when it failed).
        let taskLimit: String?

        init(call: String, errno: Errno, program: String) {
            self.call = call
            self.errno = errno
            self.program = program
            taskLimit = errno == .resourceTemporarilyUnavailable ? TaskLimit.explanation() : nil
        }

        @_spi(Benchmarks) public var description: String {
            "cannot run \(program): \(call) failed: \(errno) (errno \(errno.rawValue))" + fix
        }

        /// What to do about `errno`, where it says.
        private var fix: String {
            if let taskLimit { return "; \(taskLimit)" }
            return errno == .noSuchFileOrDirectory ? "; check that the file exists and is executable" : ""
        }
    }

    /// Runs `path` with `arguments` (not counting argv[0]) and this process's environment plus
    /// `environment`, in `workingDirectory` (nil: ours), and waits at most `timeLimit` seconds for it to
    /// end. `standardInput` is /dev/null.
    @_spi(Benchmarks) public static func run(
        _ path: String, _ arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil,
        timeLimit: Double, grace: Double = 2
    ) throws(Failure) -> Outcome {
        func fail(_ call: String, _ code: Int32) -> Failure {
            Failure(call: call, errno: Errno(rawValue: code), program: path)
        }
        var output: [Int32] = [-1, -1]
        var error: [Int32] = [-1, -1]
        let outputFailed = fs_pipe_cloexec(&output)
        guard outputFailed == 0 else { throw fail("pipe2", outputFailed) }
        let errorFailed = fs_pipe_cloexec(&error)
        guard errorFailed == 0 else {
            close(output[0])
            close(output[1])
            throw fail("pipe2", errorFailed)
        }
        defer {
            close(output[0])
            close(error[0])
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, error[1], 2)
        if let workingDirectory {
            let added = fs_spawn_file_actions_addchdir(&actions, workingDirectory)
            guard added == 0 else {
                close(output[1])
                close(error[1])
                throw fail("posix_spawn_file_actions_addchdir_np", added)
            }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with default signal dispositions and an empty mask, whatever the parent had.
        var everything = sigset_t()
        var nothing = sigset_t()
        sigfillset(&everything)
        sigemptyset(&nothing)
        posix_spawnattr_setsigdefault(&attributes, &everything)
        posix_spawnattr_setsigmask(&attributes, &nothing)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = [path] + arguments
        let environ = mergedEnvironment(environment)
        var pid: pid_t = 0
        let spawned = withCStrings(argv) { argv in
            withCStrings(environ) { envp in posix_spawn(&pid, path, &actions, &attributes, argv, envp) }
        }
        close(output[1])
        close(error[1])
        guard spawned == 0 else { throw fail("posix_spawn", spawned) }

        var streams = Streams(output: output[0], error: error[0])
        let start = monotonicSeconds()
        var deadline = start + timeLimit
        var timedOut = false
        var killed = false
        var waitStatus: Int32 = 0
        var reaped = false
        while true {
            let remaining = deadline - monotonicSeconds()
            if remaining <= 0 {
                if !timedOut {
                    timedOut = true
                    kill(pid, SIGTERM)
                    deadline = monotonicSeconds() + grace
                    continue
                } else if !killed {
                    killed = true
                    kill(pid, SIGKILL)
                    deadline = monotonicSeconds() + grace
                    continue
                } else {
                    break  // killed and still not reaped after the grace period: give up waiting
                }
            }
            if streams.isOpen {
                streams.poll(milliseconds: Int32(min(remaining, 0.1) * 1000) + 1)
            } else {
                usleep(2_000)
            }
            let result = waitpid(pid, &waitStatus, WNOHANG)
            if result == pid {
                reaped = true
                streams.drain()
                break
            }
            if result < 0 && Glibc.errno != EINTR { throw fail("waitpid", Glibc.errno) }
        }
        // Still not reaped after SIGKILL and the grace period (stuck in the kernel): report it without
        // waiting any longer; it stays a zombie until this process exits.
        let exited = reaped && waitStatus & 0x7f == 0
        return Outcome(
            status: exited ? (waitStatus >> 8) & 0xff : nil, signal: reaped && !exited ? waitStatus & 0x7f : nil,
            timedOut: timedOut, standardOutput: String(decoding: streams.outputBytes, as: UTF8.self),
            standardError: String(decoding: streams.errorBytes, as: UTF8.self))
    }

    /// `KEY=value` for this process's environment with `overrides` replacing or adding entries.
    private static func mergedEnvironment(_ overrides: [String: String]) -> [String] {
        var entries: [String] = []
        var pointer = Glibc.environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            let key = text.split(separator: "=", maxSplits: 1).first.map(String.init) ?? text
            if overrides[key] == nil { entries.append(text) }
            pointer += 1
        }
        return entries + overrides.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }

    /// Calls `body` with a NULL-terminated array of C strings for `strings`.
    private static func withCStrings<T>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> T) -> T {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        return body(pointers)
    }

    /// The read ends of the child's standard output and error, and what came through them.
    private struct Streams {
        package var descriptors: [Int32]
        package var outputBytes: [UInt8] = []
        package var errorBytes: [UInt8] = []

        package init(output: Int32, error: Int32) { descriptors = [output, error] }

        package var isOpen: Bool { descriptors.contains { $0 >= 0 } }

        /// Waits up to `milliseconds` for data and reads what came.
        package mutating func poll(milliseconds: Int32) {
            var fds = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = Glibc.poll(&fds, nfds_t(fds.count), milliseconds)
            guard ready > 0 else { return }
            for (index, fd) in fds.enumerated() where fd.fd >= 0 && fd.revents != 0 {
                read(index)
            }
        }

        /// Reads what is left once the child has ended (its write ends are closed, so reads end).
        package mutating func drain() {
            for index in descriptors.indices where descriptors[index] >= 0 {
                _ = fcntl(descriptors[index], F_SETFL, O_NONBLOCK)
                while descriptors[index] >= 0 && read(index) {}
            }
        }

        /// Reads one chunk from stream `index`; false at end of file or when nothing is ready.
        @discardableResult
        package mutating func read(_ index: Int) -> Bool {
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptors[index], $0.baseAddress, $0.count) }
            if count > 0 {
                if index == 0 { outputBytes += chunk[0..<count] } else { errorBytes += chunk[0..<count] }
                return true
            }
            if count < 0 && (Glibc.errno == EINTR) { return true }
            // End of file, or (after drain made it non-blocking) nothing more: stop watching this stream.
            if count == 0 { descriptors[index] = -1 }
            return false
        }
    }
}

/// Seconds since an arbitrary start (CLOCK_MONOTONIC): for time limits, which wall-clock steps must not move.
package func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
