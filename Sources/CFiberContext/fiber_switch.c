// The sanitizer-aware context switch and the per-thread worker slot. See include/fiber_switch.h.
#include "fiber_switch.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FS_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define FS_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(FS_TSAN)
#define FS_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(FS_ASAN)
#define FS_ASAN 1
#endif

#ifdef FS_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#ifdef FS_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// initial-exec: one instruction per access instead of a __tls_get_addr call (8 bytes of static TLS).
static __thread __attribute__((tls_model("initial-exec"))) void *current_worker;

fs_transfer fs_switch_context(void *to, void *data, const fs_switch_target *target) {
#ifdef FS_ASAN
    void *fake_stack = NULL;
    __sanitizer_start_switch_fiber(&fake_stack, target->stack_bottom, target->stack_size);
#endif
#ifdef FS_TSAN
    // Immediately before the switch, as the TSan interface asks; flags 0: the switch synchronizes.
    __tsan_switch_to_fiber(target->tsan_fiber, 0);
#endif
#if !defined(FS_ASAN) && !defined(FS_TSAN)
    (void)target;
#endif
    fs_transfer transfer = fs_jump_context(to, data);
#ifdef FS_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, NULL, NULL);
#endif
    return transfer;
}

void fs_fiber_entered(const void **bottom, size_t *size) {
#ifdef FS_ASAN
    __sanitizer_finish_switch_fiber(NULL, bottom, size);
#else
    (void)bottom;
    (void)size;
#endif
}

void *fs_sanitizer_current_fiber(void) {
#ifdef FS_TSAN
    return __tsan_get_current_fiber();
#else
    return NULL;
#endif
}

void *fs_sanitizer_create_fiber(void) {
#ifdef FS_TSAN
    return __tsan_create_fiber(0);
#else
    return NULL;
#endif
}

void fs_sanitizer_destroy_fiber(void *fiber) {
#ifdef FS_TSAN
    if (fiber) __tsan_destroy_fiber(fiber);
#else
    (void)fiber;
#endif
}

void fs_sanitizer_forget_stack(const void *bottom, size_t size) {
#ifdef FS_ASAN
    __asan_unpoison_memory_region(bottom, size);
#else
    (void)bottom;
    (void)size;
#endif
}

bool fs_sanitizer_thread_enabled(void) {
#ifdef FS_TSAN
    return true;
#else
    return false;
#endif
}

bool fs_sanitizer_address_enabled(void) {
#ifdef FS_ASAN
    return true;
#else
    return false;
#endif
}

void *fs_current_worker(void) { return current_worker; }
void fs_set_current_worker(void *worker) { current_worker = worker; }
