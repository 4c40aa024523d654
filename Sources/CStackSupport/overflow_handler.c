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
#include <unistd.h>

static struct sigaction previous_segv;
static struct sigaction previous_bus;
static int installed;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

// MARK: - Formatting without libc's formatted output

struct line {
    char text[512];
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

/// The diagnostic, one line on stderr.
static void report_overflow(const fs_guard_entry *entry, uintptr_t address) {
    char thread_name[17] = {0};
    if (prctl(PR_GET_NAME, thread_name, 0, 0, 0) != 0) thread_name[0] = 0;
    struct line line = {.length = 0};
    put_text(&line, "fiberstacks: stack overflow in ");
    if (entry->label[0]) {
        put_text(&line, "fiber \"");
        put_text(&line, entry->label);
        put_text(&line, "\"");
    } else {
        put_text(&line, "an unlabelled fiber");
    }
    put_text(&line, " (thread ");
    put_decimal(&line, (uint64_t)syscall(SYS_gettid));
    put_text(&line, " \"");
    put_text(&line, thread_name);
    put_text(&line, "\"): fault at ");
    put_hex(&line, address);
    put_text(&line, " is ");
    put_decimal(&line, entry->usable_bottom - address);
    put_text(&line, " bytes below the usable bottom of stack [");
    put_hex(&line, entry->usable_bottom);
    put_text(&line, ", ");
    put_hex(&line, entry->top);
    put_text(&line, "); usable ");
    put_decimal(&line, entry->top - entry->usable_bottom);
    put_text(&line, " B, guard ");
    put_decimal(&line, entry->usable_bottom - entry->guard_low);
    put_text(&line, " B; raise the stack size (StackRequest.usableSize) or the guard size (StackRequest.guardSize)\n");
    if (line.text[line.length - 1] != '\n') line.text[line.length++] = '\n';
    write_all(STDERR_FILENO, line.text, line.length);
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
    if (is_hardware_fault(info) && fs_guard_registry_find((uintptr_t)info->si_addr, &entry)) {
        report_overflow(&entry, (uintptr_t)info->si_addr);
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
