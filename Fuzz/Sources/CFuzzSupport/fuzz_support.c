#define _GNU_SOURCE
#include "fuzz_support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
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

/// Skips one space-separated field and the spaces after it.
FZ_UNINSTRUMENTED static const char *skip_field(const char *p, const char *end) {
    while (p < end && *p != ' ') p++;
    while (p < end && *p == ' ') p++;
    return p;
}

/// Parses one line of /proc/self/maps ("low-high perms offset dev inode   name") into `mapping`.
FZ_UNINSTRUMENTED static int parse_line(const char *p, const char *end, fz_mapping *mapping) {
    if (!parse_hex(&p, end, &mapping->low) || p >= end || *p != '-') return 0;
    p++;
    if (!parse_hex(&p, end, &mapping->high) || p >= end || *p != ' ' || mapping->high < mapping->low) return 0;
    p++;
    for (int i = 0; i < 4; i++) mapping->permissions[i] = p + i < end ? p[i] : '?';
    mapping->permissions[4] = 0;
    for (int field = 0; field < 4; field++) p = skip_field(p, end);  // perms, offset, dev, inode
    size_t length = 0;
    while (p + length < end && length < sizeof mapping->name - 1) {
        mapping->name[length] = p[length];
        length++;
    }
    mapping->name[length] = 0;
    return 1;
}

FZ_UNINSTRUMENTED int fz_mapping_snapshot(fz_mapping *into, size_t capacity, size_t *count) {
    *count = 0;
    int fd;
    do { fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC); } while (fd < 0 && errno == EINTR);
    if (fd < 0) return errno;
    // A line is at most a few hundred bytes; keep the unfinished line of each chunk for the next read.
    char buffer[65536];
    size_t filled = 0;
    int status = 0;
    for (;;) {
        ssize_t n = read(fd, buffer + filled, sizeof buffer - filled);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { status = errno; break; }
        if (n == 0) {
            if (filled > 0) status = EINVAL;  // a last line without its newline
            break;
        }
        filled += (size_t)n;
        const char *line = buffer, *end = buffer + filled;
        for (const char *newline; (newline = memchr(line, '\n', (size_t)(end - line))) != NULL; line = newline + 1) {
            if (*count == capacity) { status = ENOBUFS; goto done; }
            if (!parse_line(line, newline, &into[*count])) { status = EINVAL; goto done; }
            (*count)++;
        }
        filled = (size_t)(end - line);
        memmove(buffer, line, filled);
        if (filled == sizeof buffer) { status = EINVAL; break; }
    }
done:
    close(fd);
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
