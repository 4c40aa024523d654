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

#endif
