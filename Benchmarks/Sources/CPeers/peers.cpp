// The peers of fiberstacks-bench: Boost.Context, Boost.Fiber, glibc and plain C doing our syscalls,
// one repetition per call (include/peers.h). Errors never exit: a call returns -1 and fs_peer_error()
// says what failed, so the benchmark reports it with the figure's name.

#include "peers.h"

#include <boost/context/detail/fcontext.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <boost/fiber/all.hpp>

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

namespace {

namespace bctx = boost::context;
namespace bdet = boost::context::detail;

constexpr std::size_t kPage = 4096;

thread_local std::string g_error;

int64_t fail(std::string what) {
    g_error = std::move(what);
    return -1;
}

int64_t fail_errno(const char *what) {
    int e = errno;
    return fail(std::string(what) + " failed: " + std::strerror(e) + " (errno " + std::to_string(e) + ")");
}

inline void clobber() { asm volatile("" ::: "memory"); }

template <typename T>
inline void escape(T const &v) { asm volatile("" : : "g"(&v) : "memory"); }

inline int64_t now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000ll + int64_t(ts.tv_nsec);
}

template <typename Alloc>
int64_t boost_alloc_batch(Alloc &allocator, long ops) {
    try {
        int64_t start = now_ns();
        for (long i = 0; i < ops; ++i) {
            bctx::stack_context context = allocator.allocate();
            escape(context.sp);
            clobber();
            allocator.deallocate(context);
        }
        return now_ns() - start;
    } catch (std::exception const &error) {
        return fail(std::string("Boost.Context stack allocation failed: ") + error.what());
    }
}

/// mmap (with `flags`) + one guard call + munmap, `ops` times; `used`: a word written at the top in between.
template <typename Guard>
int64_t guarded_mmap_batch(std::size_t usable, std::size_t guard, int flags, bool used, long ops, const char *what,
                           Guard install) {
    const std::size_t total = usable + guard;
    int64_t start = now_ns();
    for (long i = 0; i < ops; ++i) {
        void *p = fs_peer_map_stack(total, flags);
        if (p == MAP_FAILED) return fail_errno("mmap");
        if (install(p, guard) != 0) {
            int64_t result = fail_errno(what);
            munmap(p, total);
            return result;
        }
        if (used) static_cast<volatile uint64_t *>(p)[total / sizeof(uint64_t) - 1] = 1;
        escape(p);
        clobber();
        if (munmap(p, total) != 0) return fail_errno("munmap");
    }
    return now_ns() - start;
}

void fctx_entry(bdet::transfer_t transfer) {
    for (;;) transfer = bdet::jump_fcontext(transfer.fctx, nullptr);  // bounce straight back
}

struct FcontextPeer {
    bctx::protected_fixedsize_stack allocator;
    bctx::stack_context stack;
    bdet::fcontext_t context;
    explicit FcontextPeer(std::size_t size) : allocator(size), stack(allocator.allocate()) {
        context = bdet::make_fcontext(stack.sp, stack.size, fctx_entry);
    }
    // The partner is suspended inside fctx_entry and owns nothing, so its stack can simply go.
    ~FcontextPeer() { allocator.deallocate(stack); }
};

struct UcontextPeer {
    ucontext_t caller, partner;
    void *stack = nullptr;
    std::size_t size = 0;
};

UcontextPeer *g_ucontext = nullptr;

void uc_entry() {
    for (;;) swapcontext(&g_ucontext->partner, &g_ucontext->caller);
}

/// Boost.Fiber's work_stealing scheduler on N threads. Thread 0 launches and joins the fibers; the
/// others wait on a fiber condition (so their schedulers run and steal) only while a fan-out runs, and
/// block their thread otherwise. A fan-out returns only when every thread is blocked again: an idle
/// work_stealing scheduler spins, stealing, and one still spinning would take a core from the next
/// measurement, or read Boost's static scheduler list while `exit` destroys it (a crash at exit).
struct FiberRunner {
    int threads = 0;
    std::vector<std::thread> pool;
    std::mutex mutex;
    std::condition_variable changed;
    long generation = 0, fibers = 0;
    int blocked = 0;  // threads blocked on `changed`, out of the fiber schedulers
    int64_t result = 0;
    std::string error;
    boost::fibers::mutex fiberMutex;
    boost::fibers::condition_variable fiberDone;
    long doneGeneration = 0;

    void fanOut(long count, long seen) {
        int64_t elapsed;
        try {
            std::vector<boost::fibers::fiber> launched;
            launched.reserve(std::size_t(count));
            int64_t start = now_ns();
            for (long i = 0; i < count; ++i) launched.emplace_back([] {});
            for (auto &fiber : launched) fiber.join();
            elapsed = now_ns() - start;
        } catch (std::exception const &failure) {
            elapsed = -1;
            std::lock_guard<std::mutex> lock(mutex);
            error = std::string("Boost.Fiber fan-out failed: ") + failure.what();
        }
        {
            std::lock_guard<boost::fibers::mutex> lock(fiberMutex);
            doneGeneration = seen;
        }
        fiberDone.notify_all();
        std::lock_guard<std::mutex> lock(mutex);
        result = elapsed;
    }

    void run(int index) {
        boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(threads);
        long seen = 0;
        std::unique_lock<std::mutex> lock(mutex);
        for (;;) {
            ++blocked;
            changed.notify_all();
            changed.wait(lock, [&] { return generation != seen; });
            seen = generation;
            long count = fibers;
            lock.unlock();
            if (index == 0) {
                fanOut(count, seen);
            } else {
                std::unique_lock<boost::fibers::mutex> fiberLock(fiberMutex);
                fiberDone.wait(fiberLock, [&] { return doneGeneration == seen; });
            }
            lock.lock();
        }
    }
};

}  // namespace

extern "C" {

const char *fs_peer_error(void) { return g_error.c_str(); }

int64_t fs_peer_boost_protected_stack(size_t size, long ops) {
    bctx::protected_fixedsize_stack allocator(size);  // maps size + 1 page, the low page PROT_NONE
    return boost_alloc_batch(allocator, ops);
}

void *fs_peer_boost_pool_create(size_t size) {
    try {
        return new bctx::pooled_fixedsize_stack(size);
    } catch (std::exception const &error) {
        fail(std::string("Boost pooled_fixedsize_stack failed: ") + error.what());
        return nullptr;
    }
}

int64_t fs_peer_boost_pool(void *pool, long ops) {
    return boost_alloc_batch(*static_cast<bctx::pooled_fixedsize_stack *>(pool), ops);
}

void fs_peer_boost_pool_destroy(void *pool) { delete static_cast<bctx::pooled_fixedsize_stack *>(pool); }

void *fs_peer_map_stack(size_t bytes, int flags) {
    return mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
}

int64_t fs_peer_mmap_mprotect(size_t size, size_t guard, int flags, bool used, long ops) {
    return guarded_mmap_batch(size, guard, flags, used, ops, "mprotect(guard, PROT_NONE)",
                              [](void *p, std::size_t g) { return mprotect(p, g, PROT_NONE); });
}

int64_t fs_peer_mmap_guard_install(size_t size, size_t guard, int flags, bool used, long ops) {
    return guarded_mmap_batch(size, guard, flags, used, ops, "madvise(guard, MADV_GUARD_INSTALL)",
                              [](void *p, std::size_t g) { return madvise(p, g, MADV_GUARD_INSTALL); });
}

int64_t fs_peer_capacity(size_t count, size_t size, size_t guard, size_t per_region, size_t window, size_t batch,
                         int flags, int64_t *release_ns) {
    constexpr int pidfd_self = -10000;  // PIDFD_SELF, as the slab passes it
    const std::size_t stride = size + guard;
    const std::size_t region_bytes = stride * per_region;
    std::vector<char *> regions;
    regions.reserve((count + per_region - 1) / per_region);
    std::vector<struct iovec> ranges(window);
    auto unmap_all = [&](int64_t result) {
        for (char *region : regions) {
            if (region) munmap(region, region_bytes);  // nulled once unmapped
        }
        return result;
    };
    int64_t start = now_ns();
    for (std::size_t made = 0; made < count;) {
        void *mapped = fs_peer_map_stack(region_bytes, flags);
        if (mapped == MAP_FAILED) return unmap_all(fail_errno("mmap(capacity region)"));
        char *region = static_cast<char *>(mapped);
        regions.push_back(region);
        const std::size_t slots = std::min(per_region, count - made);
        for (std::size_t slot = 0; slot < slots; slot += window) {
            const std::size_t n = std::min(window, slots - slot);
            for (std::size_t i = 0; i < n; ++i) ranges[i] = {region + (slot + i) * stride, guard};
            if (syscall(SYS_process_madvise, pidfd_self, ranges.data(), n, MADV_GUARD_INSTALL, 0u) < 0) {
                return unmap_all(fail_errno("process_madvise(MADV_GUARD_INSTALL)"));
            }
        }
        made += slots;
    }
    const int64_t create = now_ns() - start;
    start = now_ns();
    std::size_t left = count;
    for (std::size_t r = 0; r < regions.size(); ++r) {
        const std::size_t slots = std::min(per_region, left);
        for (std::size_t slot = 0; slot < slots; slot += batch) {
            const std::size_t n = std::min(batch, slots - slot);
            if (madvise(regions[r] + slot * stride + guard, (n - 1) * stride + size, MADV_DONTNEED) != 0) {
                return unmap_all(fail_errno("madvise(MADV_DONTNEED)"));
            }
        }
        left -= slots;
        char *region = regions[r];
        regions[r] = nullptr;
        if (munmap(region, region_bytes) != 0) return unmap_all(fail_errno("munmap(capacity region)"));
    }
    *release_ns = now_ns() - start;
    return create;
}

int64_t fs_peer_hugetlb_populate(size_t bytes) {
    int64_t start = now_ns();
    void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (p == MAP_FAILED) return fail_errno("mmap(MAP_HUGETLB)");
    if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0) {
        int64_t result = fail_errno("madvise(MADV_POPULATE_WRITE) on huge pages");
        munmap(p, bytes);
        return result;
    }
    int64_t elapsed = now_ns() - start;
    if (munmap(p, bytes) != 0) return fail_errno("munmap(huge pages)");
    return elapsed;
}

int64_t fs_peer_prefault(int populate, size_t bytes, long maps) {
    int64_t elapsed = 0;
    for (long i = 0; i < maps; ++i) {
        void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return fail_errno("mmap(prefault)");
        char *base = static_cast<char *>(p);
        int64_t start = now_ns();
        if (populate) {
            if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0) {
                int64_t result = fail_errno("madvise(MADV_POPULATE_WRITE)");
                munmap(p, bytes);
                return result;
            }
        } else {
            for (std::size_t page = bytes / kPage; page-- > 0;) *static_cast<volatile char *>(base + page * kPage) = 1;
        }
        clobber();
        elapsed += now_ns() - start;
        if (munmap(p, bytes) != 0) return fail_errno("munmap(prefault)");
    }
    return elapsed;
}

static void *empty_thread(void *) { return nullptr; }

int64_t fs_peer_pthread_create_join(long ops) {
    int64_t start = now_ns();
    for (long i = 0; i < ops; ++i) {
        pthread_t thread;
        int rc = pthread_create(&thread, nullptr, empty_thread, nullptr);
        if (rc != 0) return errno = rc, fail_errno("pthread_create");
        rc = pthread_join(thread, nullptr);
        if (rc != 0) return errno = rc, fail_errno("pthread_join");
    }
    return now_ns() - start;
}

void *fs_peer_fcontext_create(size_t stack) {
    try {
        return new FcontextPeer(stack);
    } catch (std::exception const &error) {
        fail(std::string("Boost.Context stack allocation failed: ") + error.what());
        return nullptr;
    }
}

int64_t fs_peer_fcontext(void *context, long round_trips) {
    auto *peer = static_cast<FcontextPeer *>(context);
    int64_t start = now_ns();
    for (long i = 0; i < round_trips; ++i) {
        peer->context = bdet::jump_fcontext(peer->context, nullptr).fctx;
        clobber();
    }
    return now_ns() - start;
}

void fs_peer_fcontext_destroy(void *context) { delete static_cast<FcontextPeer *>(context); }

void *fs_peer_ucontext_create(size_t stack) {
    auto *peer = new UcontextPeer();
    peer->size = stack;
    peer->stack = mmap(nullptr, stack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (peer->stack == MAP_FAILED) {
        fail_errno("mmap(ucontext stack)");
        delete peer;
        return nullptr;
    }
    if (getcontext(&peer->partner) != 0) {
        fail_errno("getcontext");
        munmap(peer->stack, stack);
        delete peer;
        return nullptr;
    }
    peer->partner.uc_stack.ss_sp = peer->stack;
    peer->partner.uc_stack.ss_size = stack;
    peer->partner.uc_link = nullptr;
    makecontext(&peer->partner, uc_entry, 0);
    return peer;
}

int64_t fs_peer_ucontext(void *context, long round_trips) {
    g_ucontext = static_cast<UcontextPeer *>(context);
    int64_t start = now_ns();
    for (long i = 0; i < round_trips; ++i) {
        if (swapcontext(&g_ucontext->caller, &g_ucontext->partner) != 0) return fail_errno("swapcontext");
        clobber();
    }
    return now_ns() - start;
}

void fs_peer_ucontext_destroy(void *context) {
    auto *peer = static_cast<UcontextPeer *>(context);
    munmap(peer->stack, peer->size);
    delete peer;
}

void *fs_peer_boost_fiber_runner(int threads) {
    static std::mutex made;
    static FiberRunner *runner = nullptr;
    std::lock_guard<std::mutex> once(made);
    if (runner) {
        if (runner->threads == threads) return runner;
        return fail("Boost.Fiber's work_stealing scheduler is already set up for " + std::to_string(runner->threads) +
                    " threads in this process"), nullptr;
    }
    if (threads < 2) return fail("Boost.Fiber work_stealing needs at least 2 threads"), nullptr;
    auto *made_runner = new FiberRunner();
    made_runner->threads = threads;
    try {
        for (int index = 0; index < threads; ++index) {
            made_runner->pool.emplace_back([made_runner, index] { made_runner->run(index); });
            made_runner->pool.back().detach();
        }
    } catch (std::exception const &error) {
        // Threads already made wait for a generation that never comes; they block and cost nothing.
        return fail(std::string("std::thread failed: ") + error.what()), nullptr;
    }
    // Stealing reads every thread's scheduler: none may run before all exist.
    std::unique_lock<std::mutex> lock(made_runner->mutex);
    made_runner->changed.wait(lock, [&] { return made_runner->blocked == threads; });
    runner = made_runner;
    return runner;
}

int64_t fs_peer_boost_fiber_fan_out(void *context, long fibers) {
    auto *runner = static_cast<FiberRunner *>(context);
    std::unique_lock<std::mutex> lock(runner->mutex);
    runner->fibers = fibers;
    ++runner->generation;
    runner->blocked = 0;
    runner->changed.notify_all();
    runner->changed.wait(lock, [&] { return runner->blocked == runner->threads; });
    if (runner->result < 0) return fail(runner->error);
    return runner->result;
}

}  // extern "C"
