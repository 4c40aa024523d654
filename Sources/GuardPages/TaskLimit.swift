import Glibc

/// The limits on tasks (processes and threads) behind an EAGAIN from fork, posix_spawn or
/// pthread_create: the cgroup's `pids.max` (a container's `--pids-limit`), the user's `ulimit -u`
/// (RLIMIT_NPROC) and `kernel.threads-max`. Each says EAGAIN, so the error reads them to name the one
/// reached.
package enum TaskLimit {
    /// The limit this process is at, with its numbers and how to raise it; where none is found at its
    /// end (a task ended meanwhile, or glibc reported a thread stack it could not map as EAGAIN), all
    /// three to check, and memory. Read right after the EAGAIN.
    package static func explanation() -> String {
        pidsMaxReached() ?? userLimitReached() ?? threadsMaxReached()
            ?? "no task limit is at its end now (a task may have ended since): check them (ulimit -u, "
            + "/proc/sys/kernel/threads-max, the cgroup's pids.max), and the free memory a thread's stack needs"
    }

    /// The cgroup (this process's or one above it) whose `pids.current` is at its `pids.max`.
    static func pidsMaxReached() -> String? {
        for directory in CgroupHierarchy.current(controller: "pids").flatMap(\.directories) {
            // "max" sets none.
            guard let limit = CgroupHierarchy.number(in: "\(directory)/pids.max"),
                let current = CgroupHierarchy.number(in: "\(directory)/pids.current"), current >= limit
            else { continue }
            return "the cgroup's pids.max is reached (\(current) of \(limit) tasks): raise \(directory)/pids.max "
                + "(a container's --pids-limit)"
        }
        return nil
    }

    /// `ulimit -u`, when the processes and threads of this process's real user reach it. Root is exempt.
    static func userLimitReached() -> String? {
        var limit = rlimit()
        guard getuid() != 0, getrlimit(__rlimit_resource_t(__RLIMIT_NPROC.rawValue), &limit) == 0,
            limit.rlim_cur != rlim_t.max
        else { return nil }
        let tasks = tasksOfUser(getuid())
        guard tasks >= Int(limit.rlim_cur) else { return nil }
        return "ulimit -u is reached (\(tasks) processes and threads of uid \(getuid()), limit \(limit.rlim_cur)): raise "
            + "ulimit -u (nproc in /etc/security/limits.conf)"
    }

    /// `kernel.threads-max`, when the machine's tasks (/proc/loadavg) reach it.
    static func threadsMaxReached() -> String? {
        guard let limit = try? SystemFile.readInteger("/proc/sys/kernel/threads-max"),
            let loadavg = try? SystemFile.read("/proc/loadavg")
        else { return nil }
        return threadsMaxReached(limit: limit, loadavg: loadavg)
    }

    /// `threadsMaxReached()` from the values read: `loadavg` as /proc/loadavg reads ("0.1 0.2 0.3 2/345 678").
    static func threadsMaxReached(limit: Int, loadavg: String) -> String? {
        let fields = loadavg.split(separator: " ")
        guard fields.count >= 4, let total = fields[3].split(separator: "/").last.flatMap({ Int($0) }), total >= limit
        else { return nil }
        return "kernel.threads-max is reached (\(total) of \(limit) threads on this machine): raise it (sysctl -w "
            + "kernel.threads-max=\(limit * 2))"
    }

    /// Tasks (processes and threads) whose real user is `uid`: what RLIMIT_NPROC counts. Each thread has
    /// its own credentials, so each is read (/proc/PID/task/TID/status).
    private static func tasksOfUser(_ uid: uid_t) -> Int {
        var tasks = 0
        for process in numberedEntries(of: "/proc") {
            for thread in numberedEntries(of: "/proc/\(process)/task") {
                guard let status = try? SystemFile.read("/proc/\(process)/task/\(thread)/status"),
                    let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") })
                else { continue }
                let fields = line.split(whereSeparator: \.isWhitespace)
                if fields.count > 1, uid_t(fields[1]) == uid { tasks += 1 }
            }
        }
        return tasks
    }

    /// The names of `path`'s entries that are numbers (process and thread ids).
    private static func numberedEntries(of path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.first?.isNumber == true { names.append(name) }
        }
        return names
    }
}
