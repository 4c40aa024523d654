// Process helpers that Swift's Glibc module hides.
#ifndef FIBERSTACKS_PROCESS_SUPPORT_H
#define FIBERSTACKS_PROCESS_SUPPORT_H

#include <spawn.h>

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start, so a child spawned meanwhile by
/// another thread cannot inherit them. Returns 0 or an errno.
int fs_pipe_cloexec(int fds[2]);

/// posix_spawn_file_actions_addchdir_np (glibc 2.29+): the child starts in `path`, and a spawn whose
/// chdir fails returns its errno. Returns 0 or an errno.
int fs_spawn_file_actions_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/// How many fork(2)s lie between the first process and this one, once `fs_fork_watch_install` ran:
/// each child made by fork adds one. Written only by the child's atfork handler, before fork returns.
extern unsigned long fs_fork_count;

/// Counts forks into `fs_fork_count` from now on (pthread_atfork). Call once per process. Returns 0 or
/// an errno (ENOMEM).
int fs_fork_watch_install(void);

/// `fs_fork_count`: a process compares it with the count it saw when it made something that lives on
/// threads, which a child made by fork does not have.
static inline unsigned long fs_fork_generation(void) { return __atomic_load_n(&fs_fork_count, __ATOMIC_RELAXED); }

#endif
