// Process helpers that Swift's Glibc module hides.
#ifndef FIBERSTACKS_PROCESS_SUPPORT_H
#define FIBERSTACKS_PROCESS_SUPPORT_H

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start, so a child spawned meanwhile by
/// another thread cannot inherit them. Returns 0 or an errno.
int fs_pipe_cloexec(int fds[2]);

#endif
