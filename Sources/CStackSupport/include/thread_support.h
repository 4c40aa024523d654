// Thread helpers that Swift's Glibc module hides.
#ifndef FIBERSTACKS_THREAD_SUPPORT_H
#define FIBERSTACKS_THREAD_SUPPORT_H

/// Names the calling thread (prctl PR_SET_NAME: at most 15 bytes kept). Returns 0 or an errno.
int fs_set_thread_name(const char *name);

#endif
