// The peers `fiberstacks-bench` measures next to our figures, one repetition per call, so each
// repetition can alternate ours and theirs. Every timing function returns the nanoseconds its timed
// work took (CLOCK_MONOTONIC), or -1 with fs_peer_error() naming what failed; nothing exits the process.
#ifndef FS_PEERS_H
#define FS_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What the last failed call on this thread failed at, with the errno text.
const char *fs_peer_error(void);

/// `ops` allocate+release of Boost.Context's protected_fixedsize_stack (mmap, a one-page mprotect
/// guard, munmap).
int64_t fs_peer_boost_protected_stack(size_t size, long ops);

/// Boost.Context's pooled_fixedsize_stack (boost::pool over malloc, no guard); the pool persists
/// between repetitions, as a pool would.
void *fs_peer_boost_pool_create(size_t size);
int64_t fs_peer_boost_pool(void *pool, long ops);
void fs_peer_boost_pool_destroy(void *pool);

/// One read-write mapping of `bytes` with the mmap `flags` given (MAP_FAILED on failure): how the two
/// batches below map each stack.
void *fs_peer_map_stack(size_t bytes, int flags);
/// `ops` times: mmap(size + guard, `flags`), mprotect(guard, PROT_NONE), munmap; `used`: the top word of the
/// stack written before the munmap, as a fiber's first frame does.
int64_t fs_peer_mmap_mprotect(size_t size, size_t guard, int flags, bool used, long ops);
/// `ops` times: mmap(size + guard, `flags`), madvise(guard, MADV_GUARD_INSTALL), munmap; `used` as above.
int64_t fs_peer_mmap_guard_install(size_t size, size_t guard, int flags, bool used, long ops);
/// The capacity section's reference: the slab's syscalls without its bookkeeping. `count` stacks of `size`
/// usable bytes above `guard`-byte lightweight guards, in regions of `per_region` slots, each region one
/// mmap with `flags`. Creation (timed: the result): each region mapped, then its guards installed `window`
/// slots at a time in one process_madvise(2). Release (timed into `*release_ns`), in the order made: each
/// `batch` neighbours discarded as one MADV_DONTNEED range (their usable pages and the guards between
/// them), and each region unmapped once all its stacks are. Everything mapped is unmapped on a failure.
int64_t fs_peer_capacity(size_t count, size_t size, size_t guard, size_t per_region, size_t window, size_t batch,
                         int flags, int64_t *release_ns);
/// One mmap(MAP_HUGETLB) of `bytes` and MADV_POPULATE_WRITE over it (timed), then munmap (not timed).
int64_t fs_peer_hugetlb_populate(size_t bytes);

/// `maps` fresh `bytes` mappings, each prefaulted (populate: MADV_POPULATE_WRITE; otherwise a top-down
/// write of every page); only the prefault is timed.
int64_t fs_peer_prefault(int populate, size_t bytes, long maps);

/// `ops` pthread_create + pthread_join of an empty thread.
int64_t fs_peer_pthread_create_join(long ops);

/// A partner context on a `stack`-byte stack that switches straight back: Boost's jump_fcontext, and
/// glibc's swapcontext. `round_trips` round trips (two switches each) per call.
void *fs_peer_fcontext_create(size_t stack);
int64_t fs_peer_fcontext(void *context, long round_trips);
void fs_peer_fcontext_destroy(void *context);
void *fs_peer_ucontext_create(size_t stack);
int64_t fs_peer_ucontext(void *context, long round_trips);
void fs_peer_ucontext_destroy(void *context);

/// Boost.Fiber with its work_stealing scheduler on `threads` threads. Boost allows one work_stealing
/// setup per process, and a thread of it cannot leave while the others run, so the threads are made on
/// the first call and live as long as the process; later calls return the same runner (or fail for
/// another thread count). Between fan-outs the threads block, so they cost nothing while other figures
/// run; during one they run and steal.
void *fs_peer_boost_fiber_runner(int threads);
/// `fibers` individually launched empty fibers, then joined: the time from the first launch to the
/// last join.
int64_t fs_peer_boost_fiber_fan_out(void *runner, long fibers);

#ifdef __cplusplus
}
#endif

#endif
