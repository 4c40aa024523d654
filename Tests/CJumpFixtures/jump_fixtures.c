#include "jump_fixtures.h"

size_t fs_test_sparse_recursion(size_t depth, size_t written) {
    volatile char frame[FS_TEST_JUMP_FRAME];
    for (size_t i = 0; i < written && i < FS_TEST_JUMP_FRAME; i++) frame[i] = (char)i;
    if (depth == 0) return (size_t)frame[0];
    // Not a tail call: every frame stays on the stack.
    return fs_test_sparse_recursion(depth == SIZE_MAX ? depth : depth - 1, written) + (size_t)frame[1];
}

void fs_test_write_below(uintptr_t target, size_t count, unsigned char value) {
    // This frame's address, not a local's: AddressSanitizer would keep a local on its fake stack.
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    if (target >= here) return;
    // A variable-length frame: the stack pointer moves by the whole distance, no page in between is touched.
    volatile unsigned char frame[here - target + 64];
    volatile unsigned char *bottom = frame;
    uintptr_t offset = target - (uintptr_t)bottom;
    for (size_t i = 0; i < count; i++) bottom[offset + i] = value;
}
