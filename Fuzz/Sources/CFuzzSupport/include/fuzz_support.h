// C helpers of the fuzz targets: what must run without coverage instrumentation or heap allocation.
#ifndef FIBERSTACKS_FUZZ_SUPPORT_H
#define FIBERSTACKS_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// One line of /proc/self/maps.
typedef struct fz_mapping {
    uintptr_t low;
    uintptr_t high;
    /// "rwxp" and the like, NUL-terminated.
    char permissions[5];
    /// The path or pseudo-path ("[heap]", "[anon:NAME]"), cut to fit, NUL-terminated; empty when anonymous.
    char name[59];
} fz_mapping;

/// Reads /proc/self/maps into `into` (at most `capacity` lines) and sets `count`. Returns 0, or the
/// errno of open/read, ENOBUFS when the process has more than `capacity` mappings, EINVAL for a line
/// that does not parse. Neither allocates nor maps, and is not instrumented for coverage: the number of
/// lines would otherwise show up as new coverage and fill the corpus with noise.
int fz_mapping_snapshot(fz_mapping *into, size_t capacity, size_t *count);

/// Recurses `depth` levels, each with a frame of `frame_bytes` bytes (plus the call's own few words)
/// that it writes from its lowest address up, the way a large Swift frame may be written far end first.
/// Frames smaller than the guard therefore always touch the guard before anything below it. Returns a
/// value that depends on every frame, so no level is optimized away. Not instrumented (no ASan redzones
/// in the frames, no coverage): frame sizes are what the caller asked for.
size_t fz_recurse(size_t depth, size_t frame_bytes);

/// What happened to a child process run by `fz_run_child`.
typedef struct fz_child_result {
    /// The waitpid(2) status (use WIFEXITED and friends), valid when `error` is 0.
    int status;
    /// 1 when the child ran past the timeout and was killed with SIGKILL.
    int timed_out;
    /// 0, or the errno of pipe, fork, poll or waitpid.
    int error;
    /// Bytes of the child's stderr kept in the caller's buffer (the rest is read and dropped).
    size_t output_length;
} fz_child_result;

/// Runs `body(context)` in a forked child whose stderr goes into `output` (up to `capacity` bytes),
/// and waits for it at most `timeout_ms` milliseconds. The child ends with `_exit(body's result)`, so
/// no atexit handler (libFuzzer's among them) runs in it.
fz_child_result fz_run_child(int (*body)(void *), void *context, int timeout_ms, char *output, size_t capacity);

/// Runs `body(context)` on a new thread whose stack is `[bottom, bottom + size)`
/// (pthread_attr_setstack; glibc keeps the thread's control block at its top) and joins it.
/// Returns 0 or the error of pthread_attr_setstack or pthread_create.
int fz_run_on_stack(void *bottom, size_t size, void (*body)(void *), void *context);

/// memfd_create(2) with MFD_CLOEXEC (hidden from Swift's Glibc module). Returns the descriptor or -1.
int fz_memfd(const char *name);

#endif
