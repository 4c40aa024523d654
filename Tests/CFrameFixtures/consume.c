#include "frame_fixtures.h"

size_t fs_fixture_consume(const void *bytes, size_t size) {
    const volatile unsigned char *data = bytes;
    size_t sum = 0;
    for (size_t i = 0; i < size; i += 512) sum += data[i];
    return sum;
}
