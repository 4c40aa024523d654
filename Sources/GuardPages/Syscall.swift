import CStackSupport
import Glibc
import SystemPackage

/// The one funnel for the memory syscalls of this package: errno is read right after each call,
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
        retrying({ $0 == MAP_FAILED }) {
            mmap(UnsafeMutableRawPointer(bitPattern: address), size, protection, flags, fd, off_t(offset))
        }.map { UInt(bitPattern: $0) }
    }

    /// munmap(2).
    package static func unmap(_ address: UInt, size: Int) -> Result<Void, Errno> {
        retrying({ $0 != 0 }) { munmap(UnsafeMutableRawPointer(bitPattern: address), size) }.map { _ in () }
    }

    /// madvise(2) with a raw advice value (the shims define the ones Glibc lacks).
    package static func advise(_ address: UInt, size: Int, _ advice: Int32) -> Result<Void, Errno> {
        retrying({ $0 != 0 }) { madvise(UnsafeMutableRawPointer(bitPattern: address), size, advice) }.map { _ in () }
    }

    /// mprotect(2).
    package static func protect(_ address: UInt, size: Int, _ protection: Int32) -> Result<Void, Errno> {
        retrying({ $0 != 0 }) { mprotect(UnsafeMutableRawPointer(bitPattern: address), size, protection) }
            .map { _ in () }
    }

    /// mincore(2) into `vector` (one byte per system page; bit 0 set when resident).
    package static func residency(_ address: UInt, size: Int, into vector: UnsafeMutablePointer<UInt8>)
        -> Result<Void, Errno>
    {
        retrying({ $0 != 0 }) { mincore(UnsafeMutableRawPointer(bitPattern: address), size, vector) }
            .map { _ in () }
    }

    /// mbind(2): sets the NUMA policy `mode` (`FS_MPOL_*`) over `[address, address + size)` for the nodes
    /// whose bits are set in `nodemask` (64 nodes per word), with `FS_MPOL_MF_*` `flags`.
    package static func bindMemory(
        _ address: UInt, size: Int, mode: Int32, nodemask: [UInt], flags: UInt32
    ) -> Result<Void, Errno> {
        nodemask.withUnsafeBufferPointer { mask in
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

    /// statfs(2): the file system type and block size of the one holding `path`.
    package static func fileSystem(at path: String) -> Result<(type: Int, blockSize: Int), Errno> {
        var type = 0
        var blockSize = 0
        return retrying({ $0 != 0 }) { fs_statfs(path, &type, &blockSize) }.map { _ in (type, blockSize) }
    }

    /// close(2). EINTR is not retried: on Linux the descriptor is already gone.
    package static func close(_ fd: Int32) -> Result<Void, Errno> {
        Glibc.close(fd) == 0 ? .success(()) : .failure(Errno(rawValue: errno))
    }
}
