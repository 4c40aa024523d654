// A one-shot trap on one page: what the process had made resident when it first touched that page,
// read back from the kernel (mincore) at that moment. Lets a test see the order in which pages were
// touched.
#ifndef FIBERSTACKS_FAULT_TRAP_H
#define FIBERSTACKS_FAULT_TRAP_H

#include <stddef.h>

/// Makes `page` (page-aligned, in a private read-write mapping) PROT_NONE and installs a SIGSEGV handler:
/// the first fault in it counts the resident pages of [`low`, `page`) and of (`page`, `high`), then makes
/// the page read-write again, so the access that faulted completes. A fault anywhere else, or a second
/// one, ends the process with status 3. Returns 0 or the errno.
int fs_test_arm_fault_trap(void *low, void *page, void *high);

/// What the trap saw: whether it fired, and the resident pages below and above the trapped page then
/// (-1 where mincore failed).
void fs_test_fault_trap_result(int *fired, long *resident_below, long *resident_above);

#endif
