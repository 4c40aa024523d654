#include "heap_probe.h"

#include <malloc.h>

size_t fs_test_heap_bytes_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    return mallinfo2().uordblks;
#else
    // mallinfo2 is glibc 2.33 and newer; mallinfo's int fields hold the few megabytes a test reads.
    return (size_t)(unsigned)mallinfo().uordblks;
#endif
}

int fs_test_malloc_in_one_arena(void) { return mallopt(M_ARENA_MAX, 1); }
