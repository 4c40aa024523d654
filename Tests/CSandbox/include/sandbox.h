// A seccomp filter for tests: makes the calling process look like one in a container whose seccomp profile
// refuses a syscall, or like one on an older kernel; a process whose parent turned transparent huge pages
// off; and a process with mounts of its own.
#ifndef FIBERSTACKS_SANDBOX_H
#define FIBERSTACKS_SANDBOX_H

/// Most advices one filter refuses.
#define FS_TEST_ADVICES_MAX 16

/// Advices newer than some kernels: MADV_POPULATE_READ and MADV_POPULATE_WRITE (Linux 5.14),
/// MADV_GUARD_INSTALL and MADV_GUARD_REMOVE (Linux 6.13).
enum {
    FS_TEST_MADV_POPULATE_READ = 22,
    FS_TEST_MADV_POPULATE_WRITE = 23,
    FS_TEST_MADV_GUARD_INSTALL = 102,
    FS_TEST_MADV_GUARD_REMOVE = 103,
};

/// From now on, for this process and its children, madvise(2) and process_madvise(2) fail with `error`
/// for each of the `count` `advices`, or for every advice when `count` is 0: EPERM as a seccomp profile
/// returns it, ENOSYS, or EINVAL as a kernel without the advice. Returns 0, or EINVAL for more than
/// FS_TEST_ADVICES_MAX advices, or the errno of the prctl that failed.
int fs_test_refuse_advice(int error, const int *advices, int count);

/// `fs_test_refuse_advice(error, NULL, 0)`: every madvise(2) and process_madvise(2) fails with `error`.
int fs_test_refuse_madvise(int error);

/// MADV_GUARD_INSTALL and MADV_GUARD_REMOVE fail with EINVAL, as on a kernel older than Linux 6.13; every
/// other advice works.
int fs_test_refuse_guard_advice(void);

/// From now on, for this process and its children, the system call `number` fails with `error`, as under
/// a seccomp profile that refuses it. Returns 0 or the errno of the prctl that failed.
int fs_test_refuse_syscall(long number, int error);

/// `fs_test_refuse_syscall` for process_vm_readv(2).
int fs_test_refuse_process_vm_readv(int error);

/// `fs_test_refuse_syscall` for sigaltstack(2).
int fs_test_refuse_sigaltstack(int error);

/// `fs_test_refuse_syscall` for get_mempolicy(2).
int fs_test_refuse_get_mempolicy(int error);

/// prctl(PR_SET_THP_DISABLE): no transparent huge page for this process and its children, as a service
/// manager or a parent process may set. Returns 0 or the errno.
int fs_test_disable_transparent_huge_pages(void);

/// unshare(CLONE_NEWNS), then every mount below / made private: mounts the calling process makes from now on
/// are in a namespace of its own, seen by no other process and gone when it ends (needs CAP_SYS_ADMIN).
/// Returns 0 or the errno of the call that failed.
int fs_test_private_mounts(void);

#endif
