// Heap helpers that Swift's Glibc module hides.
#ifndef FIBERSTACKS_HEAP_SUPPORT_H
#define FIBERSTACKS_HEAP_SUPPORT_H

/// Returns the free pages of every malloc arena to the OS (glibc malloc_trim(0)). Returns 1 when some
/// memory was released, 0 when none could be, -1 when the C library has no malloc_trim.
int fs_heap_trim(void);

#endif
