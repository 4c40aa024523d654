// Alternate signal stacks for threads that run fibers: a signal handler cannot run on a stack that
// just overflowed, so each such thread needs one (the Swift runtime gives one to the main thread only).
#ifndef FIBERSTACKS_ALT_SIGNAL_STACK_H
#define FIBERSTACKS_ALT_SIGNAL_STACK_H

#include <stddef.h>

/// Which step of `fs_alt_signal_stack_install` failed.
enum {
    FS_ALT_STACK_STEP_MAP = 1,       // mmap of the stack
    FS_ALT_STACK_STEP_GUARD = 2,     // mprotect(PROT_NONE) of its guard page
    FS_ALT_STACK_STEP_RECORD = 3,    // bookkeeping for the thread-exit destructor (malloc, pthread_setspecific)
    FS_ALT_STACK_STEP_INSTALL = 4,   // sigaltstack(2)
};

/// Gives the calling thread an alternate signal stack of `size` bytes (rounded up to the page size)
/// with a PROT_NONE guard page below it, unless it already has one (ours or anyone's: then nothing
/// changes). Ours is unmapped at thread exit by a pthread key destructor, or by
/// `fs_alt_signal_stack_uninstall`. Returns 0, or an errno with the failed step in `*failed_step`;
/// nothing is left mapped on failure.
int fs_alt_signal_stack_install(size_t size, int *failed_step);

/// Removes and unmaps the calling thread's alternate signal stack if this module made it.
/// Returns 0 (also when there was none of ours), or the errno of sigaltstack(2) (EPERM while running on it).
int fs_alt_signal_stack_uninstall(void);

/// 1 when the calling thread's alternate signal stack was made by `fs_alt_signal_stack_install`.
int fs_alt_signal_stack_is_ours(void);

#endif
