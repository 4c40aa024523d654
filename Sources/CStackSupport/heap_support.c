#include "heap_support.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

int fs_heap_trim(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return -1;
#endif
}
