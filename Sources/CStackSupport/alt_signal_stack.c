// Per-thread alternate signal stacks, freed by a pthread key destructor at thread exit.
#define _GNU_SOURCE
#include "alt_signal_stack.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/// One mapping: a guard page, then the signal stack.
struct alt_stack {
    char *base;    // the guard page
    size_t total;  // guard + stack
    size_t guard;
};

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static int key_error;

/// Disables `stack` if it is the calling thread's alternate signal stack, then unmaps it.
static int release(struct alt_stack *stack) {
    stack_t current;
    if (sigaltstack(NULL, &current) != 0) return errno;
    if (!(current.ss_flags & SS_DISABLE) && (char *)current.ss_sp == stack->base + stack->guard) {
        stack_t off = {.ss_sp = NULL, .ss_flags = SS_DISABLE, .ss_size = 0};
        if (sigaltstack(&off, NULL) != 0) return errno;
    }
    munmap(stack->base, stack->total);
    free(stack);
    return 0;
}

static void release_at_exit(void *value) {
    release(value);
}

static void make_key(void) {
    key_error = pthread_key_create(&key, release_at_exit);
}

int fs_alt_signal_stack_install(size_t size, int *failed_step) {
    stack_t current;
    *failed_step = FS_ALT_STACK_STEP_INSTALL;
    if (sigaltstack(NULL, &current) != 0) return errno;
    if (!(current.ss_flags & SS_DISABLE) && current.ss_sp != NULL) return 0;  // keep the one in place

    *failed_step = FS_ALT_STACK_STEP_RECORD;
    pthread_once(&key_once, make_key);
    if (key_error != 0) return key_error;

    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t minimum = (size_t)sysconf(_SC_MINSIGSTKSZ);
    if (size < minimum) size = minimum;
    size = (size + page - 1) & ~(page - 1);
    struct alt_stack *stack = malloc(sizeof *stack);
    if (!stack) return ENOMEM;
    stack->guard = page;
    stack->total = size + page;

    *failed_step = FS_ALT_STACK_STEP_MAP;
    void *memory = mmap(NULL, stack->total, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (memory == MAP_FAILED) {
        int error = errno;
        free(stack);
        return error;
    }
    stack->base = memory;

    int error = 0;
    *failed_step = FS_ALT_STACK_STEP_GUARD;
    if (mprotect(stack->base, page, PROT_NONE) != 0) {
        error = errno;
    } else {
        *failed_step = FS_ALT_STACK_STEP_INSTALL;
        stack_t wanted = {.ss_sp = stack->base + page, .ss_flags = 0, .ss_size = size};
        if (sigaltstack(&wanted, NULL) != 0) {
            error = errno;
        } else {
            *failed_step = FS_ALT_STACK_STEP_RECORD;
            error = pthread_setspecific(key, stack);
            if (error == 0) return 0;
            stack_t off = {.ss_sp = NULL, .ss_flags = SS_DISABLE, .ss_size = 0};
            sigaltstack(&off, NULL);
        }
    }
    munmap(stack->base, stack->total);
    free(stack);
    return error;
}

int fs_alt_signal_stack_uninstall(void) {
    pthread_once(&key_once, make_key);
    if (key_error != 0) return 0;  // no key: nothing of ours was ever installed
    struct alt_stack *stack = pthread_getspecific(key);
    if (!stack) return 0;
    int error = release(stack);
    if (error == 0) pthread_setspecific(key, NULL);
    return error;
}

int fs_alt_signal_stack_is_ours(void) {
    pthread_once(&key_once, make_key);
    if (key_error != 0) return 0;
    struct alt_stack *stack = pthread_getspecific(key);
    if (!stack) return 0;
    stack_t current;
    if (sigaltstack(NULL, &current) != 0) return 0;
    return !(current.ss_flags & SS_DISABLE) && (char *)current.ss_sp == stack->base + stack->guard;
}
