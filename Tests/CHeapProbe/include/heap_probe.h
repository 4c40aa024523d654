// The C library's heap, read back and tuned for tests (Swift's Glibc module hides malloc.h).
#ifndef FIBERSTACKS_HEAP_PROBE_H
#define FIBERSTACKS_HEAP_PROBE_H

#include <stddef.h>

/// Bytes the calling thread's heap arena has handed out and not taken back (mallinfo2's uordblks of the
/// main arena: call it from the main thread, or any thread whose allocations go there).
size_t fs_test_heap_bytes_in_use(void);

/// From now on every thread allocates in the one heap arena (mallopt M_ARENA_MAX 1), so that a thread's
/// first malloc maps no arena of its own. Returns mallopt's result: 1 on success.
int fs_test_malloc_in_one_arena(void);

#endif
