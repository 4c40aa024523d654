/*
 * fiber_context.h - minimal fiber context switch (Boost.Context fcontext model).
 *
 * A context is identified by an opaque pointer: the stack pointer at which its
 * callee-saved state was spilled. The saved pointer is *returned as a value*
 * (fs_transfer.from) instead of being written through an out-parameter, so
 * Swift callers never pass `&property` into the switch.
 *
 * Saved per context:
 *   x86_64 SysV : rbx, rbp, r12-r15, MXCSR, x87 control word, rip
 *   aarch64     : x19-x28, x29 (fp), x30 (lr), d8-d15, sp, pc
 *
 * Each context pointer is valid for exactly one jump: after jumping to it,
 * use the .from of a later transfer to reach that context again.
 */
#ifndef FIBER_CONTEXT_H
#define FIBER_CONTEXT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result of a switch, as seen by the context that is being resumed.
 * from: saved stack pointer of the context we left (pass it to fs_jump_context
 *       to resume that context); data: the value passed by the jumper. */
typedef struct fs_transfer { void *from; void *data; } fs_transfer;

/* Entry point of a new context. Receives the transfer of the first jump into
 * it. Must never return (the trampoline calls abort() if it does); finish by
 * jumping to another context. */
typedef void (*fs_entry)(fs_transfer);

/* Prepare a new context on the stack [stack_top - size, stack_top).
 * stack_top is the highest address (one past the end); it is rounded down to
 * 16 bytes here. The initial frame takes the top 80 (x86_64) / 176 (aarch64)
 * bytes; size is not otherwise inspected. Returns the new context's opaque
 * stack pointer, to be passed to fs_jump_context; `entry` runs on the first
 * jump to it. */
void *fs_make_context(void *stack_top, size_t size, fs_entry entry);

/* Save the current context on its own stack, switch to `to`, and pass `data`.
 * `to` is consumed: it must come from fs_make_context or from the .from of a
 * previous transfer, and must not be jumped to twice.
 * Returns when some context jumps back to us: .from is the context that jumped
 * to us (its saved stack pointer), .data what it passed. */
fs_transfer fs_jump_context(void *to, void *data);

#ifdef __cplusplus
}
#endif

#endif /* FIBER_CONTEXT_H */
