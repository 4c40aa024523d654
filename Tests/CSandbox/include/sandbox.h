// A seccomp filter for tests: makes the calling process look like one in a container whose seccomp profile
// refuses a syscall.
#ifndef FIBERSTACKS_SANDBOX_H
#define FIBERSTACKS_SANDBOX_H

/// From now on, for this process and its children, madvise(2) fails with `error` (EPERM as a seccomp
/// profile returns it, ENOSYS, EINVAL as a kernel without the advice). Returns 0, or the errno of the prctl
/// that failed.
int fs_test_refuse_madvise(int error);

/// From now on, for this process and its children, madvise(2) and process_madvise(2) with
/// MADV_GUARD_INSTALL or MADV_GUARD_REMOVE fail with EINVAL, as on a kernel older than Linux 6.13; every
/// other advice works. Returns 0, or the errno of the prctl that failed.
int fs_test_refuse_guard_advice(void);

#endif
