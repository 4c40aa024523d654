// Thread helpers that Swift's Glibc module hides.
#ifndef FIBERSTACKS_THREAD_SUPPORT_H
#define FIBERSTACKS_THREAD_SUPPORT_H

/// Names the calling thread (prctl PR_SET_NAME: at most 15 bytes kept). Returns 0 or an errno.
int fs_set_thread_name(const char *name);

/// Registers the process for `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (Linux 4.14+; a fork
/// inherits the registration). Returns 0 or an errno (ENOSYS, EINVAL, EPERM under seccomp).
int fs_process_barrier_register(void);

/// A full memory barrier on every thread of the process that is running now (membarrier
/// MEMBARRIER_CMD_PRIVATE_EXPEDITED); threads not running pass one when they are scheduled. Lets a rare
/// path order itself against a frequent one that uses no fence. Returns 0 or an errno.
int fs_process_barrier(void);

/// Keeps the compiler from moving memory accesses across this point (no instruction is emitted): the
/// frequent side of an order that `fs_process_barrier` completes.
static inline void fs_compiler_barrier(void) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

#endif
