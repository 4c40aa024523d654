// Runs a command as on a kernel older than Linux 6.13: MADV_GUARD_INSTALL and MADV_GUARD_REMOVE fail with
// EINVAL (the seccomp filter of Tests/CSandbox), so every guard is an mprotect guard. See
// scripts/without-guard-advice.
#include "sandbox.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: without-guard-advice COMMAND [ARGUMENT...]\n");
        return 64;
    }
    int error = fs_test_refuse_guard_advice();
    if (error != 0) {
        fprintf(stderr, "without-guard-advice: installing the seccomp filter failed: %s\n", strerror(error));
        return 70;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "without-guard-advice: %s: %s\n", argv[1], strerror(errno));
    return 127;
}
