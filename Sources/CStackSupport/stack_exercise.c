#include "stack_exercise.h"

__attribute__((noinline)) size_t fs_recurse_kib(size_t depth) {
    unsigned char frame[1024];
    for (size_t i = 0; i < sizeof frame; i += 64) frame[i] = (unsigned char)depth;
    // The frame's address escapes into an opaque barrier: the optimizer must keep all 1 KiB of it.
    __asm__ volatile("" : : "r"(frame) : "memory");
    if (depth == 0) return frame[0];
    // The frame is read after the call returns: the call cannot become a loop or a tail call.
    return fs_recurse_kib(depth - 1) + frame[sizeof frame - 64];
}

__attribute__((noinline)) uintptr_t fs_stack_address(void) { return (uintptr_t)__builtin_frame_address(0); }
