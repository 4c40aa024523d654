// Code that uses a known amount of stack, for tests and `fiberstacks verify`.
#ifndef FIBERSTACKS_STACK_EXERCISE_H
#define FIBERSTACKS_STACK_EXERCISE_H

#include <stddef.h>
#include <stdint.h>

/// Recurses `depth` levels, each with a 1 KiB frame that it writes, so it uses a little more than
/// `depth` KiB of stack; the result depends on every level, so no level can be optimized away.
/// `fs_recurse_kib(SIZE_MAX)` recurses until the stack overflows.
size_t fs_recurse_kib(size_t depth);

/// An address in the stack the caller runs on (this call's frame, just below the caller's). Unlike the
/// address of a local, it stays on that stack where AddressSanitizer moves locals to its fake stack.
uintptr_t fs_stack_address(void);

#endif
