#define _GNU_SOURCE
#include "sandbox.h"

#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

/// Installs `count` instructions of a filter. No new privileges: what lets a process without
/// CAP_SYS_ADMIN install one.
static int install(struct sock_filter *filter, unsigned short count) {
    struct sock_fprog program = {.len = count, .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) return errno;
    return 0;
}

int fs_test_refuse_advice(int error, const int *advices, int count) {
    if (count < 0 || count > FS_TEST_ADVICES_MAX || (count > 0 && advices == NULL)) return EINVAL;
    // The comparisons: one per advice, or for every advice one jump to the refusal.
    int block = count > 0 ? count : 1;
    struct sock_filter filter[8 + FS_TEST_ADVICES_MAX];
    int n = 0;
    filter[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_madvise, 0, 2);
    // madvise(addr, length, advice): the advice is the third argument (its low word).
    filter[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2]));
    filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, 2, 0, 0);
    // Any other syscall jumps over the loads and the comparisons to the last-but-one instruction.
    filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_madvise, 0, (unsigned char)(block + 1));
    // process_madvise(pidfd, iovec, count, advice, flags): the fourth.
    filter[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3]));
    if (count == 0) {
        filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0);
    }
    for (int i = 0; i < count; i++) {
        filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)advices[i], (unsigned char)(count - i), 0);
    }
    filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)error & SECCOMP_RET_DATA));
    return install(filter, (unsigned short)n);
}

int fs_test_refuse_madvise(int error) { return fs_test_refuse_advice(error, NULL, 0); }

int fs_test_refuse_guard_advice(void) {
    static const int guards[] = {FS_TEST_MADV_GUARD_INSTALL, FS_TEST_MADV_GUARD_REMOVE};
    return fs_test_refuse_advice(EINVAL, guards, 2);
}

int fs_test_disable_transparent_huge_pages(void) { return prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 ? 0 : errno; }

int fs_test_private_mounts(void) {
    if (unshare(CLONE_NEWNS) != 0) return errno;
    return mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 ? 0 : errno;
}

int fs_test_refuse_syscall(long number, int error) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)number, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)error & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    return install(filter, sizeof filter / sizeof filter[0]);
}

int fs_test_refuse_process_vm_readv(int error) { return fs_test_refuse_syscall(SYS_process_vm_readv, error); }

int fs_test_refuse_sigaltstack(int error) { return fs_test_refuse_syscall(SYS_sigaltstack, error); }

int fs_test_refuse_get_mempolicy(int error) { return fs_test_refuse_syscall(SYS_get_mempolicy, error); }
