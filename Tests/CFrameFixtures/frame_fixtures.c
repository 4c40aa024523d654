#include "frame_fixtures.h"

#define FILL_AND_CONSUME(buffer, seed)                                   \
    do {                                                                 \
        for (size_t i = 0; i < sizeof(buffer); i += 512) {               \
            ((volatile unsigned char *)(buffer))[i] = (unsigned char)(seed + i); \
        }                                                                \
        return fs_fixture_consume(buffer, sizeof(buffer));               \
    } while (0)

__attribute__((noinline)) size_t fs_fixture_frame_40k(size_t seed) {
    unsigned char buffer[40 << 10];
    FILL_AND_CONSUME(buffer, seed);
}


__attribute__((noinline)) size_t fs_fixture_frame_pointer_24k(size_t seed) {
    unsigned char buffer[24 << 10];
    // Reading the frame address makes the compiler keep a frame pointer at any optimization level.
    seed += (size_t)__builtin_frame_address(0) & 1;
    FILL_AND_CONSUME(buffer, seed);
}

__attribute__((noinline)) size_t fs_fixture_variable_frame(size_t count) {
    unsigned char buffer[count + 1];
    FILL_AND_CONSUME(buffer, count);
}
