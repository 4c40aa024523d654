#define _GNU_SOURCE
#include "fuzz_support.h"

#include <errno.h>
#include <fcntl.h>
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
