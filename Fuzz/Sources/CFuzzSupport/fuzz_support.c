#define _GNU_SOURCE
#include "fuzz_support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FZ_UNINSTRUMENTED __attribute__((no_sanitize("coverage")))
#define FZ_RAW_FRAMES __attribute__((no_sanitize("coverage", "address"), noinline))

/// Parses a hexadecimal number at `*cursor`, ending at `end`; advances the cursor.
FZ_UNINSTRUMENTED static int parse_hex(const char **cursor, const char *end, uintptr_t *value) {
    uintptr_t result = 0;
    const char *p = *cursor;
    int digits = 0;
    for (; p < end; p++, digits++) {
        char c = *p;
        if (c >= '0' && c <= '9') result = result * 16 + (uintptr_t)(c - '0');
        else if (c >= 'a' && c <= 'f') result = result * 16 + (uintptr_t)(c - 'a' + 10);
        else break;
    }
    *cursor = p;
    *value = result;
    return digits > 0;
}

FZ_UNINSTRUMENTED int fz_mapping_census(size_t *count, uintptr_t *bytes) {
    int fd;
    do { fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC); } while (fd < 0 && errno == EINTR);
    if (fd < 0) return errno;
    // A line is at most a few hundred bytes; keep the unparsed tail of each chunk.
    char buffer[65536];
    size_t filled = 0, lines = 0;
    uintptr_t total = 0;
    int at_line_start = 1, status = 0;
    for (;;) {
        ssize_t n = read(fd, buffer + filled, sizeof buffer - filled);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { status = errno; break; }
        if (n == 0) break;
        filled += (size_t)n;
        const char *p = buffer, *end = buffer + filled;
        const char *consumed = buffer;
        while (p < end) {
            if (at_line_start) {
                // Need the "low-high" field complete before parsing it: find the space after it.
                const char *q = p;
                while (q < end && *q != ' ') q++;
                if (q == end) break;
                uintptr_t low, high;
                const char *c = p;
                if (!parse_hex(&c, q, &low) || c >= q || *c != '-') { status = EINVAL; goto done; }
                c++;
                if (!parse_hex(&c, q, &high) || c != q || high < low) { status = EINVAL; goto done; }
                lines++;
                total += high - low;
                at_line_start = 0;
                p = q;
            }
            while (p < end && *p != '\n') p++;
            if (p == end) break;
            p++;
            at_line_start = 1;
            consumed = p;
        }
        if (!at_line_start) consumed = end;  // in the middle of a line's tail: nothing to keep
        filled = (size_t)(end - consumed);
        for (size_t i = 0; i < filled; i++) buffer[i] = consumed[i];
        if (filled == sizeof buffer) { status = EINVAL; break; }
    }
done:
    close(fd);
    *count = lines;
    *bytes = total;
    return status;
}

FZ_RAW_FRAMES size_t fz_recurse(size_t depth, size_t frame_bytes) {
    if (depth == 0) return 0;
    volatile unsigned char frame[frame_bytes > 0 ? frame_bytes : 1];
    // Lowest address first: the first byte this frame touches is the one deepest in the stack.
    for (size_t i = 0; i < frame_bytes; i += 1024) frame[i] = (unsigned char)(depth + i);
    size_t below = fz_recurse(depth - 1, frame_bytes);
    return below + frame[0] + frame[frame_bytes > 0 ? frame_bytes - 1 : 0];
}

/// Milliseconds on the monotonic clock.
static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

fz_child_result fz_run_child(int (*body)(void *), void *context, int timeout_ms, char *output, size_t capacity) {
    fz_child_result result = {0, 0, 0, 0};
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) { result.error = errno; return result; }
    pid_t pid = fork();
    if (pid < 0) {
        result.error = errno;
        close(fds[0]);
        close(fds[1]);
        return result;
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        _exit(body(context));
    }
    close(fds[1]);
    long long deadline = now_ms() + timeout_ms;
    char scratch[4096];
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            result.timed_out = 1;
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int ready = poll(&p, 1, (int)left);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) { result.error = errno; kill(pid, SIGKILL); break; }
        if (ready == 0) continue;
        char *into = result.output_length < capacity ? output + result.output_length : scratch;
        size_t room = result.output_length < capacity ? capacity - result.output_length : sizeof scratch;
        ssize_t n = read(fds[0], into, room);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // EOF: the child (and every copy of its stderr) is gone
        if (into != scratch) result.output_length += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) { result.error = errno; return result; }
    }
    result.status = status;
    return result;
}

/// What the thread of `fz_run_on_stack` runs.
typedef struct stack_job {
    void (*body)(void *);
    void *context;
} stack_job;

static void *run_stack_job(void *argument) {
    stack_job *job = argument;
    job->body(job->context);
    return NULL;
}

int fz_run_on_stack(void *bottom, size_t size, void (*body)(void *), void *context) {
    pthread_attr_t attributes;
    int code = pthread_attr_init(&attributes);
    if (code != 0) return code;
    code = pthread_attr_setstack(&attributes, bottom, size);
    if (code == 0) {
        stack_job job = {body, context};
        pthread_t thread;
        code = pthread_create(&thread, &attributes, run_stack_job, &job);
        if (code == 0) pthread_join(thread, NULL);
    }
    pthread_attr_destroy(&attributes);
    return code;
}

int fz_memfd(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}
