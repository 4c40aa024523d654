// Kernel constants and small functions that Swift's Glibc module does not expose.
// Everything here is a thin, documented wrapper: policy lives in Swift.
#ifndef FIBERSTACKS_STACK_SUPPORT_H
#define FIBERSTACKS_STACK_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// madvise advice values (uapi/asm-generic/mman-common.h); defined here because older headers lack them.
enum {
    FS_MADV_DONTNEED = 4,
    FS_MADV_HUGEPAGE = 14,
    FS_MADV_POPULATE_WRITE = 23,  // Linux >= 5.14
    FS_MADV_GUARD_INSTALL = 102,  // Linux >= 6.13: lightweight guard, no extra VMA
};

/// mmap flags used by the allocators.
extern const int FS_MAP_PRIVATE;
extern const int FS_MAP_ANONYMOUS;
extern const int FS_MAP_NORESERVE;
extern const int FS_MAP_STACK;
extern const int FS_MAP_FIXED;
extern const int FS_MAP_HUGETLB;
extern const int FS_MAP_HUGE_SHIFT;

/// NUMA memory policy modes and mbind(2) flags (uapi/linux/mempolicy.h); GuardPages does not link libnuma.
enum {
    FS_MPOL_PREFERRED = 1,
    FS_MPOL_BIND = 2,
    FS_MPOL_INTERLEAVE = 3,
    FS_MPOL_MF_STRICT = 1 << 0,  // fail with EIO when a present page is not on the policy's nodes
    FS_MPOL_MF_MOVE = 1 << 1,    // migrate present pages (mapped by this process only) to the policy's nodes
};

/// mbind(2) through syscall(2): returns 0, or -1 with errno set. `nodemask` holds `maxnode` bits
/// (the kernel reads `maxnode - 1` of them, as libnuma's wrapper does).
int fs_mbind(void *address, unsigned long length, int mode, const unsigned long *nodemask,
             unsigned long maxnode, unsigned int flags);

/// Most ranges one `fs_madvise_ranges` call takes.
#define FS_MADVISE_RANGES_MAX 64

/// `length` bytes from `start`: one range of an `fs_madvise_ranges` call.
typedef struct {
    uintptr_t start;
    size_t length;
} fs_address_range;

/// process_madvise(2) on the calling process (PIDFD_SELF) over `count` ranges (at most
/// FS_MADVISE_RANGES_MAX): one syscall, and for MADV_DONTNEED one TLB flush for all of them. Returns the
/// bytes advised, fewer than the ranges' total when a range failed (the ranges before it were advised),
/// or -1 with errno: EBADF or EINVAL where the kernel does not take PIDFD_SELF or this advice in
/// process_madvise, ENOSYS without the syscall.
long fs_madvise_ranges(const fs_address_range *ranges, size_t count, int advice);

/// move_pages(2) on the calling process with `nodes` NULL: moves nothing, writes each page's node (or a
/// negative errno: -ENOENT not present, -EFAULT no page or zero page) into `status`. 0, or -1 with errno.
long fs_query_page_nodes(unsigned long count, void **pages, int *status);

/// sched_getcpu(3), hidden from Swift's Glibc module: the CPU the calling thread runs on, or -1.
int fs_current_cpu(void);

/// statfs(2) on `path`, reduced to what Swift needs (sys/statfs.h is not in Swift's Glibc module):
/// the file system type (f_type, e.g. HUGETLBFS_MAGIC), block size (f_bsize: the page size on
/// hugetlbfs), and blocks in all and free (f_blocks, f_bfree: on hugetlbfs the `size=` limit and what is
/// left of it in huge pages, 0 without a limit, -1 with only `min_size=`). Returns 0, or -1 with errno set.
int fs_statfs(const char *path, long *type, long *block_size, long *blocks, long *free_blocks);

/// Page faults taken in user mode (PERF_COUNT_SW_PAGE_FAULTS, a software event: works without a PMU).
#define FS_PERF_PAGE_FAULTS 0
/// Data-TLB read misses (PERF_TYPE_HW_CACHE; needs a PMU, which most VMs do not expose).
#define FS_PERF_DTLB_READ_MISSES 1

/// Opens a perf_event_open(2) counter of `event` (an FS_PERF_* value) for the calling thread, user space
/// only, counting from now. Returns the descriptor (read 8 bytes for the count), or -1 with errno set:
/// ENOENT or EOPNOTSUPP where the CPU or hypervisor does not offer the event, EACCES or EPERM where
/// kernel.perf_event_paranoid forbids it, ENOSYS without CONFIG_PERF_EVENTS, EINVAL for an unknown event.
int fs_perf_open(int event);

/// The hypervisor's CPUID vendor signature (leaf 0x40000000: "KVMKVMKVM", "Microsoft Hv", ...) into
/// `vendor`, NUL-terminated. Returns 1 when the CPU reports a hypervisor, 0 otherwise (bare metal, or
/// an architecture without CPUID; `vendor` is then empty).
int fs_hypervisor_vendor(char vendor[13]);

/// Reads one byte at `address` through process_vm_readv(2) on the calling process.
/// Returns 0 when the byte is readable, or the errno: EFAULT means inaccessible (a guard, PROT_NONE,
/// unmapped). Never raises a signal. A readable page that was not resident may be mapped (read fault).
int fs_probe_readable(const void *address);

/// Reads the byte at `address` and writes it back unchanged, through process_vm_readv(2) and
/// process_vm_writev(2) on the calling process. Returns 0 when it can be written, or the errno: EFAULT
/// means it cannot (mapped without PROT_WRITE, a guard, unmapped). Never raises a signal.
int fs_probe_writable(void *address);

/// Copies `length` bytes at `address` into `into` through process_vm_readv(2), never raising a signal.
/// Returns 0, or the errno: EFAULT when some byte is inaccessible.
int fs_probe_read(const void *address, void *into, size_t length);

/// sched_getaffinity(2) for the process (its main thread) and sched_setaffinity(2) for the calling
/// thread, over a CPU bitmask of `size` bytes (bit n of byte n/8 is CPU n): the glibc wrappers are
/// hidden from Swift. 0, or -1 with errno.
int fs_process_getaffinity(size_t size, void *mask);
int fs_thread_setaffinity(size_t size, const void *mask);


/// Writes to the page holding `address` without changing its contents (an atomic OR of zero),
/// so a never-touched page takes exactly one write fault.
static inline void fs_touch_page(void *address) {
    __atomic_fetch_or((volatile unsigned char *)address, (unsigned char)0, __ATOMIC_RELAXED);
}

/// The calling thread's table of pool caches (Swift has no thread-local variables): read on every pooled
/// acquire and release, so it is a `__thread` variable (one %fs-relative load) rather than a
/// pthread_getspecific call. The pools' registry also stores the table under a pthread key, whose
/// destructor frees it at thread exit and clears this. Initial-exec: the variable lives in the program
/// (these shims are linked statically), so no __tls_get_addr call even in position-independent code.
extern __thread void *fs_pool_thread_table __attribute__((tls_model("initial-exec")));

/// `fs_pool_thread_table` of the calling thread.
static inline void *fs_get_pool_thread_table(void) { return fs_pool_thread_table; }

/// Sets `fs_pool_thread_table` of the calling thread.
static inline void fs_set_pool_thread_table(void *table) { fs_pool_thread_table = table; }

#endif
