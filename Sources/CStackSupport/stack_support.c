#define _GNU_SOURCE
#include "stack_support.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif

const int FS_MAP_PRIVATE = MAP_PRIVATE;
const int FS_MAP_ANONYMOUS = MAP_ANONYMOUS;
const int FS_MAP_NORESERVE = MAP_NORESERVE;
const int FS_MAP_STACK = MAP_STACK;
const int FS_MAP_FIXED = MAP_FIXED;
const int FS_MAP_HUGETLB = MAP_HUGETLB;
const int FS_MAP_HUGE_SHIFT = MAP_HUGE_SHIFT;

__thread void *fs_pool_thread_table __attribute__((tls_model("initial-exec"))) = NULL;

int fs_mbind(void *address, unsigned long length, int mode, const unsigned long *nodemask,
             unsigned long maxnode, unsigned int flags) {
    return (int)syscall(SYS_mbind, address, length, mode, nodemask, maxnode, flags);
}

long fs_madvise_ranges(const fs_address_range *ranges, size_t count, int advice) {
    enum { PIDFD_SELF_PROCESS = -10000 };  // PIDFD_SELF (uapi/linux/pidfd.h), absent from older headers
    if (count > FS_MADVISE_RANGES_MAX) {
        errno = EINVAL;
        return -1;
    }
    struct iovec vector[FS_MADVISE_RANGES_MAX];
    for (size_t i = 0; i < count; i++) {
        vector[i].iov_base = (void *)ranges[i].start;
        vector[i].iov_len = ranges[i].length;
    }
#ifdef SYS_process_madvise
    return syscall(SYS_process_madvise, PIDFD_SELF_PROCESS, vector, count, advice, 0u);
#else
    errno = ENOSYS;
    return -1;
#endif
}

long fs_query_page_nodes(unsigned long count, void **pages, int *status) {
    return syscall(SYS_move_pages, 0, count, pages, (const int *)NULL, status, 0);
}

int fs_current_cpu(void) {
    return sched_getcpu();
}

int fs_statfs(const char *path, long *type, long *block_size, long *blocks, long *free_blocks) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    *type = (long)info.f_type;
    *block_size = (long)info.f_bsize;
    *blocks = (long)info.f_blocks;
    *free_blocks = (long)info.f_bfree;
    return 0;
}

int fs_perf_open(int event) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    switch (event) {
    case FS_PERF_PAGE_FAULTS:
        attr.type = PERF_TYPE_SOFTWARE;
        attr.config = PERF_COUNT_SW_PAGE_FAULTS;
        break;
    case FS_PERF_DTLB_READ_MISSES:
        attr.type = PERF_TYPE_HW_CACHE;
        attr.config = PERF_COUNT_HW_CACHE_DTLB | (PERF_COUNT_HW_CACHE_OP_READ << 8) | (PERF_COUNT_HW_CACHE_RESULT_MISS << 16);
        break;
    default:
        errno = EINVAL;
        return -1;
    }
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    return (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

/// Copies `length` bytes between `buffer` and `address` in this process, through process_vm_readv (from
/// `address`) or process_vm_writev (to it). Returns 0, or the errno: EFAULT when some byte is inaccessible.
static int transfer(void *address, void *buffer, size_t length, bool writing) {
    struct iovec local = {.iov_base = buffer, .iov_len = length};
    struct iovec remote = {.iov_base = address, .iov_len = length};
    for (;;) {
        ssize_t n = writing ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
                            : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
        if (n == (ssize_t)length) return 0;
        if (n < 0 && errno == EINTR) continue;
        return n < 0 ? errno : EFAULT;
    }
}

int fs_probe_read(const void *address, void *into, size_t length) {
    return transfer((void *)address, into, length, false);
}

int fs_probe_readable(const void *address) {
    unsigned char byte;
    return fs_probe_read(address, &byte, 1);
}

int fs_probe_writable(void *address) {
    unsigned char byte;
    int code = transfer(address, &byte, 1, false);
    return code != 0 ? code : transfer(address, &byte, 1, true);
}

int fs_process_getaffinity(size_t size, void *mask) {
    return sched_getaffinity(getpid(), size, (cpu_set_t *)mask);
}

int fs_thread_setaffinity(size_t size, const void *mask) {
    return sched_setaffinity(0, size, (const cpu_set_t *)mask);
}

int fs_hypervisor_vendor(char vendor[13]) {
    vendor[0] = 0;
#if defined(__x86_64__)
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 31))) return 0;
    __cpuid(0x40000000, eax, ebx, ecx, edx);
    memcpy(vendor, &ebx, 4);
    memcpy(vendor + 4, &ecx, 4);
    memcpy(vendor + 8, &edx, 4);
    vendor[12] = 0;
    return 1;
#else
    return 0;
#endif
}
