// The SIGSEGV/SIGBUS handler that names the fiber whose stack overflowed.
#ifndef FIBERSTACKS_OVERFLOW_HANDLER_H
#define FIBERSTACKS_OVERFLOW_HANDLER_H

/// Installs the handler for SIGSEGV and SIGBUS (SA_SIGINFO | SA_ONSTACK), once per process; later
/// calls do nothing and return 0. The dispositions in place before the first call are kept and chained
/// to for every fault that is not inside a registered guard. Returns 0, or the errno of sigaction(2)
/// (everything is rolled back then).
///
/// A fault inside a registered guard range, or a fault while the running fiber's stack pointer is below
/// its usable bottom (see `fs_overflow_set_running_stack`), writes one line to stderr with write(2) (label, thread,
/// address, distance below the usable bottom, sizes, advice), restores the default disposition and
/// returns: the faulting instruction runs again and the process dies by the signal, with a core dump.
int fs_overflow_handler_install(void);

/// 1 once `fs_overflow_handler_install` has succeeded.
int fs_overflow_handler_installed(void);

#include <stdint.h>

/// The stack a thread is running on, when it is a fiber's: guard `[guard_low, usable_bottom)`, usable
/// `[usable_bottom, top)`, and a NUL-terminated label that outlives the fiber's runs.
typedef struct fs_running_stack {
    uintptr_t guard_low;
    uintptr_t usable_bottom;
    uintptr_t top;
    const char *label;
} fs_running_stack;

/// Tells the handler which fiber stack the calling thread runs on from now on (NULL: the thread's own
/// stack). A scheduler sets it before switching into a fiber and clears it after switching back, so a
/// fault can be blamed on the fiber that was running, not only on the stack whose guard was hit: a frame
/// larger than its own guard jumps past it and faults in a neighbour's guard, or in no guard at all.
/// `stack` must stay valid until it is replaced. One thread-local store, inlined into the caller (it
/// runs twice per fiber resume). Initial-exec: the variable lives in the program (these shims are linked
/// statically), so the handler reads it without a __tls_get_addr call.
extern __thread const fs_running_stack *fs_overflow_running_stack __attribute__((tls_model("initial-exec")));

static inline void fs_overflow_set_running_stack(const fs_running_stack *stack) { fs_overflow_running_stack = stack; }


#endif
