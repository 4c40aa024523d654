// Functions with frames of known size, for the frame audit's tests. Each fills its local array with
// volatile stores and hands it to `fs_fixture_consume` (in another file: opaque to the compiler), so
// the whole array stays in the frame.
#ifndef FIBERSTACKS_FRAME_FIXTURES_H
#define FIBERSTACKS_FRAME_FIXTURES_H

#include <stddef.h>

/// Locals of 40 KiB (frame pointer or not, as the build decides). 200 KiB frames are compiled by the
/// tests into libraries of their own, so that they are never loaded into the test process.
size_t fs_fixture_frame_40k(size_t seed);

/// 24 KiB of locals in a function that always keeps a frame pointer (it reads it), so its CFA is
/// defined on rbp / x29 and its size comes from the prologue.
size_t fs_fixture_frame_pointer_24k(size_t seed);

/// A variable-length array of `count` bytes: a frame whose size is not fixed.
size_t fs_fixture_variable_frame(size_t count);

/// 48 KiB taken by one stack pointer subtraction, described by CFI on the stack pointer alone
/// (assembly: no frame pointer whatever the build's optimization level).
void fs_fixture_cfi_48k(void);

/// Reads `size` bytes at `bytes` and returns their sum: the opaque use that keeps a buffer alive.
size_t fs_fixture_consume(const void *bytes, size_t size);

#endif
