// Frames that move the stack pointer past a guard without touching it, as a Swift function with a
// large frame does (Swift emits no stack probes). For the overflow tests only.
#ifndef FIBERSTACKS_JUMP_FIXTURES_H
#define FIBERSTACKS_JUMP_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

/// Bytes of each frame of `fs_test_sparse_recursion`.
#define FS_TEST_JUMP_FRAME (32u * 1024u)

/// Recurses `depth` times with 32 KiB frames, writing only the lowest `written` bytes of each (where
/// the stack pointer is): each frame lands 32 KiB below the last, skipping any smaller guard. With
/// `depth` SIZE_MAX it recurses until something faults.
size_t fs_test_sparse_recursion(size_t depth, size_t written);

/// One frame that reaches from the caller's stack pointer down to `target` (below it), then writes
/// `count` bytes of `value` at `target`: the write a frame larger than the guard makes beneath it.
void fs_test_write_below(uintptr_t target, size_t count, unsigned char value);

#endif
