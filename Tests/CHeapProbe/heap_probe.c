#include "heap_probe.h"

#include <malloc.h>

size_t fs_test_heap_bytes_in_use(void) {
    return mallinfo2().uordblks;
}
