import CStackSupport
import Glibc
import Logging
import SystemPackage

/// The one funnel for the syscalls of this package (memory, thread affinity): errno is read right after each call,
/// EINTR is retried, and every failure comes back as an `Errno` for the caller to wrap with context.
package enum Syscall {
    /// Calls `body` until it stops failing with EINTR; returns its result or the errno it failed with.
    @inline(__always)
    static func retrying<T>(_ failed: (T) -> Bool, _ body: () -> T) -> Result<T, Errno> {
        while true {
            let value = body()
            if !failed(value) { return .success(value) }
            let code = Errno(rawValue: errno)
            if code != .interrupted { return .failure(code) }
        }
    }

    /// mmap(2). `address` is a hint unless `flags` holds MAP_FIXED or MAP_FIXED_NOREPLACE.
    package static func map(
        address: UInt = 0, size: Int, protection: Int32 = PROT_READ | PROT_WRITE, flags: Int32, fd: Int32 = -1,
        offset: Int = 0
    ) -> Result<UInt, Errno> {
        if let injected = FailureInjection.injected(.map) { return .failure(injected) }
        let result = retrying({ $0 == MAP_FAILED }) {
            mmap(UnsafeMutableRawPointer(bitPattern: address), size, protection, flags, fd, off_t(offset))
        }.map { UInt(bitPattern: $0) }
        if case .success(let mapped) = result { FailureInjection.noteMapped(mapped, size: size) }
        return result
    }

    /// munmap(2).
    package static func unmap(_ address: UInt, size: Int) -> Result<Void, Errno> {
        retrying({ $0 != 0 }) { munmap(UnsafeMutableRawPointer(bitPattern: address), size) }.map { _ in () }
    }

    /// madvise(2) with a raw advice value (the shims define the ones Glibc lacks).
    package static func advise(_ address: UInt, size: Int, _ advice: Int32) -> Result<Void, Errno> {
        if let injected = FailureInjection.injected(.advise(advice)) { return .failure(injected) }
        return retrying({ $0 != 0 }) { madvise(UnsafeMutableRawPointer(bitPattern: address), size, advice) }.map { _ in () }
    }

    /// process_madvise(2) on this process over `ranges` (at most `FS_MADVISE_RANGES_MAX`) in one call.
    /// Returns the bytes advised: fewer than all when a range failed (the ranges before it were advised).
    /// While a failure of madvise with `advice` is injected, it advises nothing (0 bytes), so that the
    /// caller's madvise per range meets the injected failure.
    package static func advise(ranges: UnsafeBufferPointer<fs_address_range>, _ advice: Int32) -> Result<Int, Errno> {
        if let injected = FailureInjection.injected(.adviseRanges(advice)) { return .failure(injected) }
        if FailureInjection.isArmed(.advise(advice)) { return .success(0) }
        return retrying({ $0 < 0 }) { fs_madvise_ranges(ranges.baseAddress, ranges.count, advice) }.map { Int($0) }
    }

    /// mprotect(2).
    package static func protect(_ address: UInt, size: Int, _ protection: Int32) -> Result<Void, Errno> {
        if let injected = FailureInjection.injected(.protect) { return .failure(injected) }
        return retrying({ $0 != 0 }) { mprotect(UnsafeMutableRawPointer(bitPattern: address), size, protection) }
            .map { _ in () }
    }

    /// mincore(2) into `vector` (one byte per system page; bit 0 set when resident).
    package static func residency(_ address: UInt, size: Int, into vector: UnsafeMutablePointer<UInt8>)
        -> Result<Void, Errno>
    {
        if let injected = FailureInjection.injected(.residency) { return .failure(injected) }
        return retrying({ $0 != 0 }) { mincore(UnsafeMutableRawPointer(bitPattern: address), size, vector) }
            .map { _ in () }
    }

    /// mbind(2): sets the NUMA policy `mode` (`FS_MPOL_*`) over `[address, address + size)` for the nodes
    /// whose bits are set in `nodemask` (64 nodes per word), with `FS_MPOL_MF_*` `flags`.
    package static func bindMemory(
        _ address: UInt, size: Int, mode: Int32, nodemask: [UInt], flags: UInt32
    ) -> Result<Void, Errno> {
        if let injected = FailureInjection.injected(.bind) { return .failure(injected) }
        return nodemask.withUnsafeBufferPointer { mask in
            // The kernel reads maxnode - 1 bits: one more than the mask holds, as libnuma passes it.
            retrying({ $0 != 0 }) {
                fs_mbind(
                    UnsafeMutableRawPointer(bitPattern: address), UInt(size), mode, mask.baseAddress,
                    UInt(mask.count * UInt.bitWidth + 1), flags)
            }.map { _ in () }
        }
    }

    /// move_pages(2) with nodes NULL on this process: writes the node of each page in `pages` (or a
    /// negative errno) into `status`. Moves nothing and faults nothing in.
    package static func queryPageNodes(
        _ pages: UnsafeMutablePointer<UnsafeMutableRawPointer?>, count: Int, status: UnsafeMutablePointer<Int32>
    ) -> Result<Void, Errno> {
        retrying({ $0 != 0 }) { fs_query_page_nodes(UInt(count), pages, status) }.map { _ in () }
    }

    /// sigaltstack(2) query: the calling thread's alternate signal stack.
    package static func alternateSignalStack() -> Result<stack_t, Errno> {
        var stack = stack_t()
        return retrying({ $0 != 0 }) { sigaltstack(nil, &stack) }.map { _ in stack }
    }

    /// An unlinked, close-on-exec temporary file in `directory`: mkstemp(3), then unlink(2) at once.
    package static func unlinkedTemporaryFile(in directory: String) -> Result<Int32, Errno> {
        var template = Array("\(directory)/fiberstacks.XXXXXX".utf8CString)
        let opened = template.withUnsafeMutableBufferPointer { buffer in
            retrying({ $0 < 0 }) { mkstemp(buffer.baseAddress!) }
        }
        guard case .success(let fd) = opened else { return opened }
        let unlinked = template.withUnsafeBufferPointer { buffer in
            retrying({ $0 != 0 }) { unlink(buffer.baseAddress!) }
        }
        let cloexec = retrying({ $0 != 0 }) { fcntl(fd, F_SETFD, FD_CLOEXEC) }
        if case .failure(let errno) = unlinked.flatMap({ _ in cloexec }) {
            _ = Glibc.close(fd)
            return .failure(errno)
        }
        return .success(fd)
    }

    /// statfs(2): the file system type, block size and block counts (in all, free) of the one holding `path`.
    package static func fileSystem(at path: String)
        -> Result<(type: Int, blockSize: Int, blocks: Int, freeBlocks: Int), Errno>
    {
        var (type, blockSize, blocks, freeBlocks) = (0, 0, 0, 0)
        return retrying({ $0 != 0 }) { fs_statfs(path, &type, &blockSize, &blocks, &freeBlocks) }
            .map { _ in (type, blockSize, blocks, freeBlocks) }
    }

    /// Bytes in a CPU mask at first: 1024 CPUs, glibc's `cpu_set_t`. A kernel with more possible CPUs
    /// refuses a mask that cannot hold them all (EINVAL), and the mask doubles up to `maximumCPUMaskBytes`.
    private static let cpuMaskBytes = 128
    /// 1,048,576 CPUs: past any kernel's CONFIG_NR_CPUS.
    private static let maximumCPUMaskBytes = 1 << 17

    /// sched_getaffinity(2) for the process (its main thread, so a pinned worker asking still gets
    /// the whole set): the CPUs it may run on, ascending. On a machine of more than 1024 possible CPUs the
    /// mask grows until the kernel accepts it.
    package static func processAffinity() -> Result<[Int], Errno> {
        var bytes = cpuMaskBytes
        while true {
            var mask = [UInt8](repeating: 0, count: bytes)
            let result = FailureInjection.injected(.cpuAffinity).map { .failure($0) }
                ?? retrying({ $0 != 0 }) { fs_process_getaffinity(bytes, &mask) }
            switch result {
            case .success:
                return .success((0..<bytes * 8).filter { mask[$0 / 8] & (UInt8(1) << ($0 % 8)) != 0 })
            case .failure(.invalidArgument) where bytes < maximumCPUMaskBytes:
                bytes *= 2
            case .failure(let errno):
                return .failure(errno)
            }
        }
    }

    /// sched_setaffinity(2) for the calling thread: restricts it to `cpus`, with a mask as large as the
    /// highest of them needs. EINVAL for a CPU outside the allowed set, or past `maximumCPUMaskBytes`.
    package static func setThreadAffinity(_ cpus: [Int]) -> Result<Void, Errno> {
        guard cpus.allSatisfy({ $0 >= 0 && $0 < maximumCPUMaskBytes * 8 }) else { return .failure(.invalidArgument) }
        // Whole 64-bit words: the kernel reads the mask as longs.
        let bytes = max(cpuMaskBytes, ((cpus.max() ?? 0) / 64 + 1) * 8)
        var mask = [UInt8](repeating: 0, count: bytes)
        for cpu in cpus { mask[cpu / 8] |= UInt8(1) << (cpu % 8) }
        return retrying({ $0 != 0 }) { fs_thread_setaffinity(mask.count, mask) }.map { _ in () }
    }

    /// prctl(PR_SET_NAME) for the calling thread; the name is cut to the kernel's 15 bytes.
    package static func setThreadName(_ name: String) -> Result<Void, Errno> {
        let result = fs_set_thread_name(String(decoding: name.utf8.prefix(15), as: UTF8.self))
        return result == 0 ? .success(()) : .failure(Errno(rawValue: result))
    }

    /// perf_event_open(2) through the shim: a user-space counter of `event` (an `FS_PERF_*` value) for the
    /// calling thread, counting from now.
    package static func openPerfCounter(_ event: Int32) -> Result<Int32, Errno> {
        retrying({ $0 < 0 }) { fs_perf_open(event) }
    }

    /// read(2) of a perf counter's 8-byte value.
    package static func readPerfCounter(_ fd: Int32) -> Result<UInt64, Errno> {
        var value: UInt64 = 0
        return retrying({ $0 < 0 }) { read(fd, &value, 8) }.flatMap { count in
            count == 8 ? .success(value) : .failure(.ioError)
        }
    }

    /// open(2) of `path` for reading, close-on-exec and non-blocking: a FIFO without a writer opens at once
    /// (and fstat tells what it is) instead of waiting for one.
    package static func openReadOnly(_ path: String) -> Result<Int32, Errno> {
        retrying({ $0 < 0 }) { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
    }

    /// fstat(2).
    package static func fileStatus(_ fd: Int32) -> Result<stat, Errno> {
        var info = stat()
        return retrying({ $0 != 0 }) { fstat(fd, &info) }.map { _ in info }
    }

    /// close(2). EINTR is not retried: on Linux the descriptor is already gone.
    package static func close(_ fd: Int32) -> Result<Void, Errno> {
        Glibc.close(fd) == 0 ? .success(()) : .failure(Errno(rawValue: errno))
    }
}

extension Syscall {
    /// munmap(2) for memory this package mapped, logging a failure on `logger` (which would mean a
    /// corrupted address or size: the memory is then leaked). Returns whether it worked.
    @discardableResult
    package static func unmap(_ address: UInt, size: Int, logger: Logger, what: String) -> Bool {
        guard case .failure(let errno) = unmap(address, size: size) else { return true }
        logger.error(
            "munmap of \(what) failed; its memory is leaked",
            metadata: ["address": "0x\(String(address, radix: 16))", "size": "\(size)", "errno": "\(errno)"])
        return false
    }
}
