// Kernel constants and small functions that Swift's Glibc module does not expose.
// Everything here is a thin, documented wrapper: policy lives in Swift.
#ifndef FIBERSTACKS_STACK_SUPPORT_H
#define FIBERSTACKS_STACK_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// madvise advice values (uapi/asm-generic/mman-common.h); defined here because older headers lack them.
enum {
    FS_MADV_DONTNEED = 4,
    FS_MADV_FREE = 8,
    FS_MADV_HUGEPAGE = 14,
    FS_MADV_NOHUGEPAGE = 15,
    FS_MADV_POPULATE_READ = 22,   // Linux >= 5.14
    FS_MADV_POPULATE_WRITE = 23,  // Linux >= 5.14
    FS_MADV_GUARD_INSTALL = 102,  // Linux >= 6.13: lightweight guard, no extra VMA
    FS_MADV_GUARD_REMOVE = 103,
};

/// mmap flags used by the allocators.
extern const int FS_MAP_PRIVATE;
extern const int FS_MAP_SHARED;
extern const int FS_MAP_ANONYMOUS;
extern const int FS_MAP_NORESERVE;
extern const int FS_MAP_STACK;
extern const int FS_MAP_FIXED;
extern const int FS_MAP_FIXED_NOREPLACE;
extern const int FS_MAP_HUGETLB;
extern const int FS_MAP_HUGE_SHIFT;
extern const int FS_MFD_HUGETLB;
extern const int FS_MFD_CLOEXEC;

/// memfd_create(2), hidden from Swift's Glibc module.
int fs_memfd_create(const char *name, unsigned int flags);

/// Reads one byte at `address` through process_vm_readv(2) on the calling process.
/// Returns 0 when the byte is readable, or the errno: EFAULT means inaccessible (a guard, PROT_NONE,
/// unmapped). Never raises a signal. A readable page that was not resident may be mapped (read fault).
int fs_probe_readable(const void *address);

/// Writes to the page holding `address` without changing its contents (an atomic OR of zero),
/// so a never-touched page takes exactly one write fault.
static inline void fs_touch_page(void *address) {
    __atomic_fetch_or((volatile unsigned char *)address, (unsigned char)0, __ATOMIC_RELAXED);
}

/// The calling thread's table of pool caches (Swift has no thread-local variables): read on every pooled
/// acquire and release, so it is a `__thread` variable (one %fs-relative load) rather than a
/// pthread_getspecific call. The pools' registry also stores the table under a pthread key, whose
/// destructor frees it at thread exit and clears this.
extern __thread void *fs_pool_thread_table;

/// `fs_pool_thread_table` of the calling thread.
static inline void *fs_get_pool_thread_table(void) { return fs_pool_thread_table; }

/// Sets `fs_pool_thread_table` of the calling thread.
static inline void fs_set_pool_thread_table(void *table) { fs_pool_thread_table = table; }

#endif
