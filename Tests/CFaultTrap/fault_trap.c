#define _GNU_SOURCE
#include "fault_trap.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static uintptr_t trap_low, trap_page, trap_high;
static size_t page_size;
static volatile sig_atomic_t fired;
static long resident_below = -1, resident_above = -1;
/// mincore's vector for the largest range a test traps in (1 MiB of 4 KiB pages).
static unsigned char vector[256];

/// Resident pages of [start, end), or -1 (async-signal-safe: mincore only).
static long resident(uintptr_t start, uintptr_t end) {
    size_t pages = (end - start) / page_size;
    if (pages > sizeof vector || mincore((void *)start, end - start, vector) != 0) return -1;
    long count = 0;
    for (size_t i = 0; i < pages; i++) count += vector[i] & 1;
    return count;
}

static void on_fault(int signal, siginfo_t *info, void *context) {
    (void)signal;
    (void)context;
    uintptr_t address = (uintptr_t)info->si_addr;
    if (fired || address < trap_page || address >= trap_page + page_size) _exit(3);
    resident_below = resident(trap_low, trap_page);
    resident_above = resident(trap_page + page_size, trap_high);
    fired = 1;
    if (mprotect((void *)trap_page, page_size, PROT_READ | PROT_WRITE) != 0) _exit(3);
}

int fs_test_arm_fault_trap(void *low, void *page, void *high) {
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    trap_low = (uintptr_t)low;
    trap_page = (uintptr_t)page;
    trap_high = (uintptr_t)high;
    if ((trap_page - trap_low) / page_size > sizeof vector || (trap_high - trap_page) / page_size > sizeof vector) return EINVAL;
    struct sigaction action = {0};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL) != 0) return errno;
    if (mprotect(page, page_size, PROT_NONE) != 0) return errno;
    return 0;
}

void fs_test_fault_trap_result(int *was_fired, long *below, long *above) {
    *was_fired = fired;
    *below = resident_below;
    *above = resident_above;
}
