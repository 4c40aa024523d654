/*
 * fiber_switch.h - the context switch as the scheduler uses it: fs_jump_context
 * plus the sanitizer annotations a stack switch needs, and the calling thread's
 * current-worker slot.
 *
 * Built normally, every function here is a no-op or a tail call into
 * fs_jump_context. Built with -fsanitize=thread, fibers are announced to
 * ThreadSanitizer (__tsan_create_fiber / __tsan_switch_to_fiber); built with
 * -fsanitize=address, each switch is announced to AddressSanitizer
 * (__sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber).
 */
#ifndef FIBER_SWITCH_H
#define FIBER_SWITCH_H

#include <stdbool.h>
#include <stddef.h>

#include "fiber_context.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the sanitizers need to know about the context being switched to. */
typedef struct fs_switch_target {
    /* ThreadSanitizer's handle for the target (NULL when not built with TSan). */
    void *tsan_fiber;
    /* AddressSanitizer: lowest address and size of the target's stack. */
    const void *stack_bottom;
    size_t stack_size;
} fs_switch_target;

/* fs_jump_context(to, data), announced to the sanitizers the build uses.
 * `target` describes `to` and must stay valid for the duration of the call. */
fs_transfer fs_switch_context(void *to, void *data, const fs_switch_target *target);

/* Called first thing on a fiber's first entry (completes the switch for ASan).
 * Stores the bounds of the stack that switched to it (the worker thread's) in
 * *bottom / *size when ASan knows them; leaves them untouched otherwise. */
void fs_fiber_entered(const void **bottom, size_t *size);

/* TSan handle of the calling thread's current context (NULL without TSan). */
void *fs_sanitizer_current_fiber(void);
/* A new TSan fiber handle (NULL without TSan). */
void *fs_sanitizer_create_fiber(void);
/* Frees a handle from fs_sanitizer_create_fiber; NULL is ignored. Never the current fiber. */
void fs_sanitizer_destroy_fiber(void *fiber);
/* Under ASan, clears what the frames of a freed fiber, which never return, left poisoned on
   [bottom, bottom + size): the next fiber on that memory would trip over it. Nothing otherwise. */
void fs_sanitizer_forget_stack(const void *bottom, size_t size);

/* Whether this target was compiled with ThreadSanitizer / AddressSanitizer. */
bool fs_sanitizer_thread_enabled(void);
bool fs_sanitizer_address_enabled(void);

/* The calling thread's current scheduler worker (an opaque pointer; NULL on other threads). */
void *fs_current_worker(void);
void fs_set_current_worker(void *worker);

/* A spin-wait hint (x86 PAUSE, arm64 YIELD): an idle worker polls for work briefly before it parks. */
static inline void fs_cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#ifdef __cplusplus
}
#endif

#endif /* FIBER_SWITCH_H */
