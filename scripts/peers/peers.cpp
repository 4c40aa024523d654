// peers.cpp - peer benchmark harness for FiberStacks.
//
// Measures what other stack allocators / context-switch primitives cost on
// this machine, so the Swift benchmark can print ours/peer ratios.
//
// Build: scripts/build-peers   (g++ -O2 -std=c++17 ... -lboost_context -lpthread)
// Usage: peers [--quick] [--json]
//
// Every measurement: one warm-up batch, then R repetitions; each repetition
// times a batch of N operations with clock_gettime(CLOCK_MONOTONIC) and divides
// by the number of operations. The reported statistics (median, min, p10, p90,
// max) are over the R per-repetition values. Percentiles use linear
// interpolation between order statistics (numpy's default, "type 7").
//
// Dependencies: Boost.Context, pthread, libc. Nothing else.

#include <boost/context/detail/fcontext.hpp>
#include <boost/context/fixedsize_stack.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <boost/context/stack_context.hpp>

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace {

namespace bctx = boost::context;
namespace bdet = boost::context::detail;

constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;
constexpr std::size_t kPage = 4096;

// ---------------------------------------------------------------- errors

[[noreturn]] void die_errno(const char* what) {
    int e = errno;
    std::fprintf(stderr, "peers: %s failed: %s (errno %d)\n", what, std::strerror(e), e);
    std::exit(1);
}

// For pthread_* functions, which return the error number instead of setting errno.
void check_rc(int rc, const char* what) {
    if (rc != 0) {
        std::fprintf(stderr, "peers: %s failed: %s (error %d)\n", what, std::strerror(rc), rc);
        std::exit(1);
    }
}

inline void clobber() { asm volatile("" ::: "memory"); }

template <typename T>
inline void escape(T const& v) { asm volatile("" : : "g"(&v) : "memory"); }

// ---------------------------------------------------------------- timing

inline std::uint64_t now_ns() {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) die_errno("clock_gettime(CLOCK_MONOTONIC)");
    return std::uint64_t(ts.tv_sec) * 1000000000ull + std::uint64_t(ts.tv_nsec);
}

struct Stats {
    double median = 0, min = 0, p10 = 0, p90 = 0, max = 0;
};

double quantile(std::vector<double> const& sorted, double q) {
    if (sorted.empty()) return 0;
    double pos = q * double(sorted.size() - 1);
    std::size_t lo = std::size_t(pos);
    std::size_t hi = std::min(lo + 1, sorted.size() - 1);
    double frac = pos - double(lo);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Stats summarize(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    Stats s;
    s.min = v.front();
    s.max = v.back();
    s.median = quantile(v, 0.5);
    s.p10 = quantile(v, 0.10);
    s.p90 = quantile(v, 0.90);
    return s;
}

// ---------------------------------------------------------------- results

struct Result {
    std::string section;
    std::string name;
    std::vector<std::pair<std::string, double>> params;  // numeric params only
    std::string unit = "ns";
    Stats st;
    int reps = 0;
    long long ops_per_rep = 0;
    std::vector<std::pair<std::string, double>> extra;
};

std::vector<Result> g_results;

struct Counts {
    int reps;
    long long alloc_ops;     // stack_alloc ops per rep
    long long thread_ops;    // pthread create+join per rep
    long long switch_rts;    // fcontext round trips per rep
    long long ucontext_rts;  // ucontext round trips per rep
    long long prefault_maps; // 1 MiB mappings per rep
};

// Runs `batch(n)` once as warm-up, then `reps` times; batch returns elapsed ns
// for n operations (or for the quantity it documents). divisor = ops per rep.
std::vector<double> run_reps(int reps, long long n, double divisor,
                             std::function<std::uint64_t(long long)> const& batch) {
    (void)batch(n);  // warm-up
    std::vector<double> out;
    out.reserve(std::size_t(reps));
    for (int r = 0; r < reps; ++r) out.push_back(double(batch(n)) / divisor);
    return out;
}

void add(std::string section, std::string name,
         std::vector<std::pair<std::string, double>> params,
         std::vector<double> samples, long long ops_per_rep,
         std::vector<std::pair<std::string, double>> extra = {}) {
    Result r;
    r.section = std::move(section);
    r.name = std::move(name);
    r.params = std::move(params);
    r.reps = int(samples.size());
    r.st = summarize(std::move(samples));
    r.ops_per_rep = ops_per_rep;
    r.extra = std::move(extra);
    g_results.push_back(std::move(r));
}

// ---------------------------------------------------------------- stack_alloc

template <typename Alloc>
std::uint64_t boost_alloc_batch(Alloc& a, long long n) {
    std::uint64_t t0 = now_ns();
    for (long long i = 0; i < n; ++i) {
        bctx::stack_context sc = a.allocate();  // throws std::bad_alloc on failure
        escape(sc.sp);
        clobber();
        a.deallocate(sc);
    }
    return now_ns() - t0;
}

std::uint64_t mmap_guard_batch(std::size_t usable, std::size_t guard, long long n) {
    const std::size_t total = usable + guard;
    std::uint64_t t0 = now_ns();
    for (long long i = 0; i < n; ++i) {
        void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) die_errno("mmap");
        if (mprotect(p, guard, PROT_NONE) != 0) die_errno("mprotect(guard, PROT_NONE)");
        escape(p);
        clobber();
        if (munmap(p, total) != 0) die_errno("munmap");
    }
    return now_ns() - t0;
}

void bench_stack_alloc(Counts const& c) {
    const std::size_t sizes[] = {64 * KiB, 256 * KiB, 1 * MiB};
    const long long n = c.alloc_ops;
    const double d = double(n);
    for (std::size_t size : sizes) {
        std::vector<std::pair<std::string, double>> params = {{"size", double(size)}};

        {
            bctx::protected_fixedsize_stack a(size);  // maps size + 1 page, low page PROT_NONE
            add("stack_alloc", "boost_protected_fixedsize_stack", params,
                run_reps(c.reps, n, d, [&](long long k) { return boost_alloc_batch(a, k); }), n);
        }
        {
            bctx::pooled_fixedsize_stack a(size);  // boost::pool over malloc; warm-up fills the pool
            add("stack_alloc", "boost_pooled_fixedsize_stack", params,
                run_reps(c.reps, n, d, [&](long long k) { return boost_alloc_batch(a, k); }), n);
        }
        {
            bctx::fixedsize_stack a(size);  // std::malloc / std::free, no guard
            add("stack_alloc", "boost_fixedsize_stack", params,
                run_reps(c.reps, n, d, [&](long long k) { return boost_alloc_batch(a, k); }), n);
        }
        add("stack_alloc", "mmap_mprotect", params,
            run_reps(c.reps, n, d, [&](long long k) { return mmap_guard_batch(size, 64 * KiB, k); }), n);
        add("stack_alloc", "mmap_mprotect_4k", params,
            run_reps(c.reps, n, d, [&](long long k) { return mmap_guard_batch(size, 4 * KiB, k); }), n);
    }
}

// ---------------------------------------------------------------- thread_stack

void* empty_thread(void*) { return nullptr; }

std::uint64_t pthread_batch(pthread_attr_t const* attr, long long n) {
    std::uint64_t t0 = now_ns();
    for (long long i = 0; i < n; ++i) {
        pthread_t th;
        check_rc(pthread_create(&th, attr, empty_thread, nullptr), "pthread_create");
        check_rc(pthread_join(th, nullptr), "pthread_join");
    }
    return now_ns() - t0;
}

void bench_thread_stack(Counts const& c) {
    const long long n = c.thread_ops;
    add("thread_stack", "pthread_create_join", {},
        run_reps(c.reps, n, double(n), [&](long long k) { return pthread_batch(nullptr, k); }), n);

    const std::size_t stack_size = 256 * KiB;
    void* stack = mmap(nullptr, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) die_errno("mmap(thread stack)");
    pthread_attr_t attr;
    check_rc(pthread_attr_init(&attr), "pthread_attr_init");
    check_rc(pthread_attr_setstack(&attr, stack, stack_size), "pthread_attr_setstack");
    // The stack is reused: each thread is joined before the next is created.
    add("thread_stack", "pthread_create_join_user_stack", {{"stack_size", double(stack_size)}},
        run_reps(c.reps, n, double(n), [&](long long k) { return pthread_batch(&attr, k); }), n);
    check_rc(pthread_attr_destroy(&attr), "pthread_attr_destroy");
    if (munmap(stack, stack_size) != 0) die_errno("munmap(thread stack)");
}

// ---------------------------------------------------------------- context_switch

void fctx_entry(bdet::transfer_t t) {
    for (;;) t = bdet::jump_fcontext(t.fctx, nullptr);  // bounce straight back
}

std::uint64_t fctx_batch(bdet::fcontext_t& ctx, long long round_trips) {
    std::uint64_t t0 = now_ns();
    for (long long i = 0; i < round_trips; ++i) {
        bdet::transfer_t t = bdet::jump_fcontext(ctx, nullptr);
        ctx = t.fctx;
        clobber();
    }
    return now_ns() - t0;
}

ucontext_t g_uc_main, g_uc_fiber;

void uc_entry() {
    for (;;) {
        if (swapcontext(&g_uc_fiber, &g_uc_main) != 0) die_errno("swapcontext(fiber->main)");
    }
}

std::uint64_t uc_batch(long long round_trips) {
    std::uint64_t t0 = now_ns();
    for (long long i = 0; i < round_trips; ++i) {
        if (swapcontext(&g_uc_main, &g_uc_fiber) != 0) die_errno("swapcontext(main->fiber)");
        clobber();
    }
    return now_ns() - t0;
}

void bench_context_switch(Counts const& c) {
    const std::size_t stack_size = 64 * KiB;
    {
        bctx::protected_fixedsize_stack alloc(stack_size);
        bctx::stack_context sc = alloc.allocate();
        bdet::fcontext_t ctx = bdet::make_fcontext(sc.sp, sc.size, fctx_entry);
        const long long n = c.switch_rts;
        add("context_switch", "boost_jump_fcontext", {},
            run_reps(c.reps, n, 2.0 * double(n), [&](long long k) { return fctx_batch(ctx, k); }),
            2 * n);
        // The fiber is suspended inside fctx_entry and never resumed again;
        // it owns no resources, so its stack can simply be released.
        alloc.deallocate(sc);
    }
    {
        void* stack = mmap(nullptr, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED) die_errno("mmap(ucontext stack)");
        if (getcontext(&g_uc_fiber) != 0) die_errno("getcontext");
        g_uc_fiber.uc_stack.ss_sp = stack;
        g_uc_fiber.uc_stack.ss_size = stack_size;
        g_uc_fiber.uc_link = nullptr;
        makecontext(&g_uc_fiber, uc_entry, 0);
        const long long n = c.ucontext_rts;
        add("context_switch", "ucontext_swapcontext", {},
            run_reps(c.reps, n, 2.0 * double(n), [&](long long k) { return uc_batch(k); }), 2 * n);
        if (munmap(stack, stack_size) != 0) die_errno("munmap(ucontext stack)");
    }
}

// ---------------------------------------------------------------- prefault

constexpr std::size_t kPrefaultBytes = 1 * MiB;
constexpr std::size_t kPrefaultPages = kPrefaultBytes / kPage;

void touch_top_down(char* base) {
    for (std::size_t i = kPrefaultPages; i-- > 0;) {
        *static_cast<volatile char*>(base + i * kPage) = 1;
    }
    clobber();
}

void populate_write(char* base) {
    if (madvise(base, kPrefaultBytes, MADV_POPULATE_WRITE) != 0) die_errno("madvise(MADV_POPULATE_WRITE)");
    clobber();
}

// Returns prefault-only ns for `maps` fresh mappings; adds the whole
// mmap+prefault+munmap time to *cycle_ns.
std::uint64_t prefault_batch(void (*fault)(char*), long long maps, std::uint64_t* cycle_ns) {
    std::uint64_t fault_ns = 0;
    std::uint64_t c0 = now_ns();
    for (long long i = 0; i < maps; ++i) {
        void* p = mmap(nullptr, kPrefaultBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) die_errno("mmap(prefault)");
        std::uint64_t t1 = now_ns();
        fault(static_cast<char*>(p));
        std::uint64_t t2 = now_ns();
        fault_ns += t2 - t1;
        if (munmap(p, kPrefaultBytes) != 0) die_errno("munmap(prefault)");
    }
    *cycle_ns = now_ns() - c0;
    return fault_ns;
}

double gbps_from_ns_per_page(double ns) { return ns > 0 ? double(kPage) / ns : 0.0; }

void bench_prefault_one(Counts const& c, const char* name, void (*fault)(char*)) {
    const long long maps = c.prefault_maps;
    const double pages = double(maps) * double(kPrefaultPages);
    std::uint64_t cyc = 0;
    (void)prefault_batch(fault, maps, &cyc);  // warm-up
    std::vector<double> fault_s, cycle_s;
    for (int r = 0; r < c.reps; ++r) {
        fault_s.push_back(double(prefault_batch(fault, maps, &cyc)) / pages);
        cycle_s.push_back(double(cyc) / pages);
    }
    Stats cyc_st = summarize(cycle_s);
    Stats f_st = summarize(fault_s);
    add("prefault", name, {{"mapping_bytes", double(kPrefaultBytes)}, {"page", double(kPage)}},
        std::move(fault_s), (long long)pages,
        {{"gbps", gbps_from_ns_per_page(f_st.median)},
         {"cycle_ns_per_page", cyc_st.median},
         {"cycle_gbps", gbps_from_ns_per_page(cyc_st.median)}});
}

void bench_prefault(Counts const& c) {
    bench_prefault_one(c, "touch_4k", touch_top_down);

    // Probe: MADV_POPULATE_WRITE needs Linux >= 5.14. On an older kernel
    // (EINVAL) the entry is skipped with a note on stderr; any other failure
    // is fatal.
    void* p = mmap(nullptr, kPrefaultBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die_errno("mmap(probe)");
    if (madvise(p, kPrefaultBytes, MADV_POPULATE_WRITE) != 0) {
        if (errno == EINVAL) {
            std::fprintf(stderr, "peers: note: MADV_POPULATE_WRITE unsupported by this kernel (%s); "
                                 "skipping madv_populate_write_4k\n", std::strerror(errno));
            if (munmap(p, kPrefaultBytes) != 0) die_errno("munmap(probe)");
            return;
        }
        die_errno("madvise(MADV_POPULATE_WRITE) probe");
    }
    if (munmap(p, kPrefaultBytes) != 0) die_errno("munmap(probe)");
    bench_prefault_one(c, "madv_populate_write_4k", populate_write);
}

// ---------------------------------------------------------------- machine info

std::string cpu_model() {
    FILE* f = std::fopen("/proc/cpuinfo", "r");
    if (!f) die_errno("fopen(/proc/cpuinfo)");
    char line[1024];
    std::string model = "unknown";
    while (std::fgets(line, sizeof line, f)) {
        if (std::strncmp(line, "model name", 10) == 0) {
            const char* colon = std::strchr(line, ':');
            if (colon) {
                std::string s(colon + 1);
                std::size_t b = s.find_first_not_of(" \t");
                std::size_t e = s.find_last_not_of(" \t\r\n");
                model = (b == std::string::npos) ? "" : s.substr(b, e - b + 1);
            }
            break;
        }
    }
    std::fclose(f);
    return model;
}

std::string kernel_release() {
    struct utsname u;
    if (uname(&u) != 0) die_errno("uname");
    return u.release;
}

// ---------------------------------------------------------------- output

std::string json_str(std::string const& s) {
    std::string o = "\"";
    for (unsigned char ch : s) {
        switch (ch) {
            case '"': o += "\\\""; break;
            case '\\': o += "\\\\"; break;
            case '\n': o += "\\n"; break;
            case '\t': o += "\\t"; break;
            case '\r': o += "\\r"; break;
            default:
                if (ch < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", ch);
                    o += buf;
                } else {
                    o += char(ch);
                }
        }
    }
    return o + "\"";
}

std::string json_num(double v) {
    if (!(v == v) || v > 1e300 || v < -1e300) return "0";  // never emit NaN/inf
    char buf[64];
    if (v == double((long long)v) && v < 1e15 && v > -1e15)
        std::snprintf(buf, sizeof buf, "%lld", (long long)v);
    else
        std::snprintf(buf, sizeof buf, "%.4f", v);
    return buf;
}

std::string json_obj(std::vector<std::pair<std::string, double>> const& kv) {
    std::string o = "{";
    for (std::size_t i = 0; i < kv.size(); ++i) {
        if (i) o += ",";
        o += json_str(kv[i].first) + ":" + json_num(kv[i].second);
    }
    return o + "}";
}

void print_json() {
    std::string o = "{\"suite\":\"peers\",\"machine\":{\"cpu\":" + json_str(cpu_model()) +
                    ",\"kernel\":" + json_str(kernel_release()) + "},\n \"results\":[";
    for (std::size_t i = 0; i < g_results.size(); ++i) {
        Result const& r = g_results[i];
        o += i ? ",\n  " : "\n  ";
        o += "{\"section\":" + json_str(r.section) + ",\"name\":" + json_str(r.name) +
             ",\"params\":" + json_obj(r.params) + ",\"unit\":" + json_str(r.unit) +
             ",\"median\":" + json_num(r.st.median) + ",\"min\":" + json_num(r.st.min) +
             ",\"p10\":" + json_num(r.st.p10) + ",\"p90\":" + json_num(r.st.p90) +
             ",\"max\":" + json_num(r.st.max) + ",\"reps\":" + json_num(r.reps) +
             ",\"ops_per_rep\":" + json_num(double(r.ops_per_rep));
        if (!r.extra.empty()) o += ",\"extra\":" + json_obj(r.extra);
        o += "}";
    }
    o += "\n]}\n";
    std::fputs(o.c_str(), stdout);
}

std::string params_text(std::vector<std::pair<std::string, double>> const& kv) {
    std::string o;
    for (auto const& p : kv) {
        if (!o.empty()) o += " ";
        double v = p.second;
        char buf[64];
        if (v >= double(MiB) && std::fmod(v, double(MiB)) == 0)
            std::snprintf(buf, sizeof buf, "%s=%.0fM", p.first.c_str(), v / double(MiB));
        else if (v >= double(KiB) && std::fmod(v, double(KiB)) == 0)
            std::snprintf(buf, sizeof buf, "%s=%.0fK", p.first.c_str(), v / double(KiB));
        else
            std::snprintf(buf, sizeof buf, "%s=%.0f", p.first.c_str(), v);
        o += buf;
    }
    return o.empty() ? "-" : o;
}

void print_table() {
    std::printf("peers: cpu=%s kernel=%s\n", cpu_model().c_str(), kernel_release().c_str());
    std::printf("%-14s %-32s %-26s %10s %10s %10s %10s %10s %9s  %s\n", "section", "name", "params",
                "median", "min", "p10", "p90", "max", "reps*ops", "extra");
    for (Result const& r : g_results) {
        std::string extra;
        for (auto const& e : r.extra) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%s%s=%.3f", extra.empty() ? "" : " ", e.first.c_str(), e.second);
            extra += buf;
        }
        char ro[32];
        std::snprintf(ro, sizeof ro, "%d*%lld", r.reps, r.ops_per_rep);
        std::printf("%-14s %-32s %-26s %10.2f %10.2f %10.2f %10.2f %10.2f %9s  %s\n", r.section.c_str(),
                    r.name.c_str(), params_text(r.params).c_str(), r.st.median, r.st.min, r.st.p10,
                    r.st.p90, r.st.max, ro, extra.c_str());
    }
    std::printf("(unit: ns per operation; context_switch: ns per switch; prefault: ns per 4 KiB page)\n");
}

}  // namespace

int main(int argc, char** argv) {
    bool quick = false, json = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0) quick = true;
        else if (std::strcmp(argv[i], "--json") == 0) json = true;
        else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            std::printf("usage: peers [--quick] [--json]\n");
            return 0;
        } else {
            std::fprintf(stderr, "peers: unknown argument '%s'\nusage: peers [--quick] [--json]\n", argv[i]);
            return 2;
        }
    }

    //                         reps  alloc  thread  fctx      ucontext  prefault maps
    const Counts full  = {     31,   4000,  1000,   2000000,  200000,   200 };
    const Counts qk    = {      5,    200,    50,     20000,    5000,     8 };
    Counts const& c = quick ? qk : full;

    try {
        bench_stack_alloc(c);
        bench_thread_stack(c);
        bench_context_switch(c);
        bench_prefault(c);
    } catch (std::exception const& e) {
        std::fprintf(stderr, "peers: allocation failed: %s\n", e.what());
        return 1;
    }

    if (json) print_json();
    else print_table();
    return 0;
}
