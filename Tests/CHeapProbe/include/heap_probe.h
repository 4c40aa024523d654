// The C library's heap, read back for tests (Swift's Glibc module hides malloc.h).
#ifndef FIBERSTACKS_HEAP_PROBE_H
#define FIBERSTACKS_HEAP_PROBE_H

#include <stddef.h>

/// Bytes the calling thread's heap arena has handed out and not taken back (mallinfo2's uordblks of the
/// main arena: call it from the main thread, or any thread whose allocations go there).
size_t fs_test_heap_bytes_in_use(void);

#endif
