// The overflow signal handler. Everything reachable from `on_fault` is async-signal-safe: no stdio,
// no malloc, no locks; the line is formatted by hand and written with write(2).
#define _GNU_SOURCE
#include "overflow_handler.h"

#include "guard_registry.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static struct sigaction previous_segv;
static struct sigaction previous_bus;
static int installed;
/// How far below a running fiber's stack its stack pointer may be and still count as an overflow of it,
/// at least: 1 MiB, or the stack's own size when larger.
#define JUMP_REACH ((uintptr_t)1 << 20)
// initial-exec: one instruction per access, no __tls_get_addr (which is not async-signal-safe).
__thread const fs_running_stack *fs_overflow_running_stack __attribute__((tls_model("initial-exec")));
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

// MARK: - Formatting without libc's formatted output

struct line {
    char text[1024];
    size_t length;
};

static void put_text(struct line *line, const char *text) {
    while (*text && line->length < sizeof line->text - 1) line->text[line->length++] = *text++;
}

static void put_decimal(struct line *line, uint64_t value) {
    char digits[20];
    int count = 0;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    while (count > 0 && line->length < sizeof line->text - 1) line->text[line->length++] = digits[--count];
}

static void put_hex(struct line *line, uint64_t value) {
    static const char hex[] = "0123456789abcdef";
    char digits[16];
    int count = 0;
    do {
        digits[count++] = hex[value & 15];
        value >>= 4;
    } while (value);
    put_text(line, "0x");
    while (count > 0 && line->length < sizeof line->text - 1) line->text[line->length++] = digits[--count];
}

static void write_all(int fd, const char *bytes, size_t length) {
    while (length > 0) {
        ssize_t written = write(fd, bytes, length);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) return;
        bytes += written;
        length -= (size_t)written;
    }
}

/// "fiber "LABEL"" or "an unlabelled fiber".
static void put_fiber(struct line *line, const char *label) {
    if (label && label[0]) {
        put_text(line, "fiber \"");
        put_text(line, label);
        put_text(line, "\"");
    } else {
        put_text(line, "an unlabelled fiber");
    }
}

/// " (thread TID "NAME")".
static void put_thread(struct line *line) {
    char thread_name[17] = {0};
    if (prctl(PR_GET_NAME, thread_name, 0, 0, 0) != 0) thread_name[0] = 0;
    put_text(line, " (thread ");
    put_decimal(line, (uint64_t)syscall(SYS_gettid));
    put_text(line, " \"");
    put_text(line, thread_name);
    put_text(line, "\")");
}

/// "[BOTTOM, TOP); usable N B, guard N B".
static void put_stack(struct line *line, uintptr_t guard_low, uintptr_t usable_bottom, uintptr_t top) {
    put_text(line, "[");
    put_hex(line, usable_bottom);
    put_text(line, ", ");
    put_hex(line, top);
    put_text(line, "); usable ");
    put_decimal(line, top - usable_bottom);
    put_text(line, " B, guard ");
    put_decimal(line, usable_bottom - guard_low);
    put_text(line, " B");
}

static void finish(struct line *line, const char *advice) {
    put_text(line, advice);
    if (line->length == sizeof line->text - 1) line->length--;
    line->text[line->length++] = '\n';
    write_all(STDERR_FILENO, line->text, line->length);
}

static const char resize_advice[] =
    "; raise the stack size (StackRequest.usableSize; FiberConfig.usableSize for a FiberScheduler) or the guard "
    "size (StackRequest.guardSize; FiberConfig.guardSize)";
static const char jump_advice[] =
    "; a frame larger than the guard skipped it: make the guard at least the largest frame "
    "(`fiberstacks frames` lists them)";

/// A fault in the guard of the stack that was running (or on a thread that runs no fiber).
static void report_overflow(const fs_guard_entry *entry, uintptr_t address) {
    struct line line = {.length = 0};
    put_text(&line, "fiberstacks: stack overflow in ");
    put_fiber(&line, entry->label);
    put_thread(&line);
    put_text(&line, ": fault at ");
    put_hex(&line, address);
    put_text(&line, " is ");
    put_decimal(&line, entry->usable_bottom - address);
    put_text(&line, " bytes below the usable bottom of stack ");
    put_stack(&line, entry->guard_low, entry->usable_bottom, entry->top);
    finish(&line, resize_advice);
}

/// A fault in the guard of another stack than the running fiber's: the running fiber's frame jumped
/// past its own guard, through whatever lay below it, into `victim`'s guard.
static void report_jump_into(const fs_running_stack *running, const fs_guard_entry *victim, uintptr_t address) {
    struct line line = {.length = 0};
    put_text(&line, "fiberstacks: stack overflow in ");
    put_fiber(&line, running->label);
    put_thread(&line);
    put_text(&line, ", stack ");
    put_stack(&line, running->guard_low, running->usable_bottom, running->top);
    put_text(&line, ": its frame jumped past its own guard; fault at ");
    put_hex(&line, address);
    put_text(&line, " is in the guard of another stack, ");
    put_fiber(&line, victim->label);
    put_text(&line, ", and is ");
    put_decimal(&line, victim->usable_bottom - address);
    put_text(&line, " bytes below the usable bottom of that stack ");
    put_stack(&line, victim->guard_low, victim->usable_bottom, victim->top);
    finish(&line, jump_advice);
}

/// A fault in no registered guard while the running fiber's stack pointer is below its usable bottom:
/// its frame jumped past its guard into memory that is not a stack, or its guard is not registered.
static void report_below(const fs_running_stack *running, uintptr_t address, uintptr_t stack_pointer) {
    struct line line = {.length = 0};
    put_text(&line, "fiberstacks: stack overflow in ");
    put_fiber(&line, running->label);
    put_thread(&line);
    put_text(&line, ": fault at ");
    put_hex(&line, address);
    put_text(&line, " with the stack pointer ");
    put_decimal(&line, running->usable_bottom - stack_pointer);
    put_text(&line, " bytes below the usable bottom of stack ");
    put_stack(&line, running->guard_low, running->usable_bottom, running->top);
    int jumped = stack_pointer < running->guard_low;
    finish(&line, jumped ? jump_advice : resize_advice);
}

/// The interrupted thread's stack pointer.
static uintptr_t stack_pointer_of(const void *context) {
    const ucontext_t *uc = context;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.sp;
#else
    (void)uc;
    return UINTPTR_MAX;
#endif
}

// MARK: - Dispositions

static void reset_to_default(int signal) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    sigaction(signal, &action, NULL);
}

/// Whether the kernel raised the signal for a fault (the instruction runs again after a return),
/// as opposed to kill(2), sigqueue(3) or tgkill(2) (si_code <= 0).
static int is_hardware_fault(const siginfo_t *info) {
    return info && info->si_code > 0;
}

/// Hands a fault that is not ours to the disposition that was in place before us, as the kernel
/// would have: its mask and SA_NODEFER are applied around the call, SA_RESETHAND is honoured.
/// SIG_DFL (and SIG_IGN, which the kernel overrides for faults) becomes the default action.
static void chain(int signal, siginfo_t *info, void *context) {
    const struct sigaction *previous = signal == SIGBUS ? &previous_bus : &previous_segv;
    int has_info = (previous->sa_flags & SA_SIGINFO) != 0;
    void (*simple)(int) = previous->sa_handler;
    if ((has_info && previous->sa_sigaction == NULL) || (!has_info && (simple == SIG_DFL || simple == SIG_IGN))) {
        if (!has_info && simple == SIG_IGN && !is_hardware_fault(info)) return;  // ignored, as before us
        reset_to_default(signal);
        if (!is_hardware_fault(info)) raise(signal);  // blocked here, delivered when the handler returns
        return;
    }
    sigset_t saved;
    sigset_t mask = previous->sa_mask;
    if (!(previous->sa_flags & SA_NODEFER)) sigaddset(&mask, signal);
    pthread_sigmask(SIG_BLOCK, &mask, &saved);
    if (previous->sa_flags & SA_NODEFER) {
        sigset_t self;
        sigemptyset(&self);
        sigaddset(&self, signal);
        pthread_sigmask(SIG_UNBLOCK, &self, NULL);
    }
    struct sigaction copy = *previous;  // SA_RESETHAND may be honoured below; keep what we call
    if (copy.sa_flags & SA_RESETHAND) reset_to_default(signal);
    if (has_info) {
        copy.sa_sigaction(signal, info, context);
    } else {
        copy.sa_handler(signal);
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

static void on_fault(int signal, siginfo_t *info, void *context) {
    int saved_errno = errno;
    fs_guard_entry entry;
    const fs_running_stack *running = fs_overflow_running_stack;
    uintptr_t address = (uintptr_t)info->si_addr;
    int ours = 0;
    if (is_hardware_fault(info)) {
        if (fs_guard_registry_find(address, &entry)) {
            if (running && running->usable_bottom != entry.usable_bottom) {
                report_jump_into(running, &entry, address);
            } else {
                report_overflow(&entry, address);
            }
            ours = 1;
        } else if (running && context) {
            // Within reach of one frame below the stack: farther away, the fiber's code may be running on
            // a stack of its own (a nested coroutine library), and the fault is not an overflow.
            uintptr_t stack_pointer = stack_pointer_of(context);
            uintptr_t size = running->top - running->usable_bottom;
            uintptr_t reach = size > JUMP_REACH ? size : JUMP_REACH;
            if (stack_pointer < running->usable_bottom && running->usable_bottom - stack_pointer <= reach) {
                report_below(running, address, stack_pointer);
                ours = 1;
            }
        }
    }
    if (ours) {
        // Returning re-executes the faulting access, which now kills the process by `signal` with
        // the kernel's own siginfo in the core dump.
        reset_to_default(signal);
    } else {
        chain(signal, info, context);
    }
    errno = saved_errno;
}

// MARK: - Installation

/// Installs `on_fault` for `signal`, saving the disposition it replaces in `previous`.
static int install_one(int signal, struct sigaction *previous) {
    // Save first: a fault on another thread may reach `on_fault` as soon as it is installed.
    if (sigaction(signal, NULL, previous) != 0) return errno;
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_fault;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    struct sigaction replaced;
    if (sigaction(signal, &ours, &replaced) != 0) return errno;
    if (replaced.sa_sigaction != previous->sa_sigaction || replaced.sa_flags != previous->sa_flags) {
        *previous = replaced;  // someone changed it between the two calls
    }
    return 0;
}

int fs_overflow_handler_install(void) {
    if (__atomic_load_n(&installed, __ATOMIC_ACQUIRE)) return 0;
    pthread_mutex_lock(&install_lock);
    int error = 0;
    if (!__atomic_load_n(&installed, __ATOMIC_RELAXED)) {
        error = install_one(SIGSEGV, &previous_segv);
        if (error == 0) {
            error = install_one(SIGBUS, &previous_bus);
            if (error != 0) sigaction(SIGSEGV, &previous_segv, NULL);
        }
        if (error == 0) __atomic_store_n(&installed, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&install_lock);
    return error;
}

int fs_overflow_handler_installed(void) {
    return __atomic_load_n(&installed, __ATOMIC_ACQUIRE);
}


