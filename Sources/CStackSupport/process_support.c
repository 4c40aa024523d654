#define _GNU_SOURCE
#include "process_support.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <unistd.h>

int fs_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : errno;
}

int fs_spawn_file_actions_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

unsigned long fs_fork_count = 0;

static void count_fork(void) {
    __atomic_add_fetch(&fs_fork_count, 1, __ATOMIC_RELAXED);
}

int fs_fork_watch_install(void) {
    return pthread_atfork(NULL, NULL, count_fork);
}
