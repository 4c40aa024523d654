#define _GNU_SOURCE
#include "stack_support.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

const int FS_MAP_PRIVATE = MAP_PRIVATE;
const int FS_MAP_SHARED = MAP_SHARED;
const int FS_MAP_ANONYMOUS = MAP_ANONYMOUS;
const int FS_MAP_NORESERVE = MAP_NORESERVE;
const int FS_MAP_STACK = MAP_STACK;
const int FS_MAP_FIXED = MAP_FIXED;
const int FS_MAP_FIXED_NOREPLACE = MAP_FIXED_NOREPLACE;
const int FS_MAP_HUGETLB = MAP_HUGETLB;
const int FS_MAP_HUGE_SHIFT = MAP_HUGE_SHIFT;
const int FS_MFD_HUGETLB = (int)MFD_HUGETLB;
const int FS_MFD_CLOEXEC = (int)MFD_CLOEXEC;

__thread void *fs_pool_thread_table = NULL;

int fs_memfd_create(const char *name, unsigned int flags) {
    return memfd_create(name, flags);
}

int fs_probe_readable(const void *address) {
    unsigned char byte;
    struct iovec local = {.iov_base = &byte, .iov_len = 1};
    struct iovec remote = {.iov_base = (void *)address, .iov_len = 1};
    for (;;) {
        ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
        if (n == 1) return 0;
        if (n < 0 && errno == EINTR) continue;
        return n < 0 ? errno : EFAULT;
    }
}
