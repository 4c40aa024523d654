// The SIGSEGV/SIGBUS handler that names the fiber whose stack overflowed.
#ifndef FIBERSTACKS_OVERFLOW_HANDLER_H
#define FIBERSTACKS_OVERFLOW_HANDLER_H

/// Installs the handler for SIGSEGV and SIGBUS (SA_SIGINFO | SA_ONSTACK), once per process; later
/// calls do nothing and return 0. The dispositions in place before the first call are kept and chained
/// to for every fault that is not inside a registered guard. Returns 0, or the errno of sigaction(2)
/// (everything is rolled back then).
///
/// A fault inside a registered guard range writes one line to stderr with write(2) (label, thread,
/// address, distance below the usable bottom, sizes, advice), restores the default disposition and
/// returns: the faulting instruction runs again and the process dies by the signal, with a core dump.
int fs_overflow_handler_install(void);

/// 1 once `fs_overflow_handler_install` has succeeded.
int fs_overflow_handler_installed(void);

#endif
