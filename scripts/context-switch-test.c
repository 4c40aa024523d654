/*
 * context-switch-test.c - behavioural test for Sources/CFiberContext.
 *
 * Built and run by scripts/check-context-switch:
 *   cc -O2 -I Sources/CFiberContext/include scripts/context-switch-test.c \
 *      Sources/CFiberContext/context_<arch>.S
 *
 * Prints one "PASS <name>" or "FAIL <name>: <why>" line per test, a
 * "switch_ns=<value>" timing line (report only), and exits non-zero if any
 * test failed. CS_BENCH_ITERS overrides the number of timed round trips.
 */
#define _GNU_SOURCE
#include "fiber_context.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <unwind.h>

#if defined(__x86_64__)
#include <xmmintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#else
#error "context-switch-test.c supports x86_64 and aarch64 only"
#endif

static int n_pass, n_fail;

static void report(const char *name, int ok, const char *why) {
    if (ok) {
        n_pass++;
        printf("PASS %s\n", name);
    } else {
        n_fail++;
        printf("FAIL %s: %s\n", name, why);
    }
    fflush(stdout);
}

/* ---- stacks: mmap with a PROT_NONE guard page at the bottom ------------ */

#define STACK_SIZE (256 * 1024)

typedef struct { void *base; size_t len; void *top; } test_stack;

static test_stack stack_new(void) {
    long page = sysconf(_SC_PAGESIZE);
    size_t len = STACK_SIZE + (size_t)page;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) { perror("mmap"); exit(2); }
    if (mprotect(base, (size_t)page, PROT_NONE) != 0) { perror("mprotect"); exit(2); }
    test_stack s = { base, len, (char *)base + len };
    return s;
}

static void stack_free(test_stack s) { munmap(s.base, s.len); }

/* ---- 1. ping-pong ------------------------------------------------------- */

#define PINGPONG_ROUNDS 1000
static int pingpong_fiber_errors;
static int pingpong_fiber_rounds;

static void pingpong_entry(fs_transfer t) {
    for (uintptr_t i = 0;; i++) {
        uintptr_t v = (uintptr_t)t.data;
        if (v != i * 2 + 1) pingpong_fiber_errors++;
        pingpong_fiber_rounds++;
        t = fs_jump_context(t.from, (void *)(v * 3 + 7));
    }
}

static void test_pingpong(void) {
    test_stack s = stack_new();
    void *ctx = fs_make_context(s.top, STACK_SIZE, pingpong_entry);
    int bad = 0;
    for (uintptr_t i = 0; i < PINGPONG_ROUNDS; i++) {
        uintptr_t sent = i * 2 + 1;
        fs_transfer r = fs_jump_context(ctx, (void *)sent);
        if ((uintptr_t)r.data != sent * 3 + 7) bad++;
        if (r.from == NULL) bad++;
        ctx = r.from;
    }
    char why[160];
    snprintf(why, sizeof why, "main saw %d bad replies, fiber saw %d bad values, fiber ran %d/%d rounds",
             bad, pingpong_fiber_errors, pingpong_fiber_rounds, PINGPONG_ROUNDS);
    report("pingpong_1000_rounds_data_both_ways",
           bad == 0 && pingpong_fiber_errors == 0 && pingpong_fiber_rounds == PINGPONG_ROUNDS, why);
    stack_free(s);
}

/* ---- 2. fiber-to-fiber jumps use .from correctly ------------------------- */

static char chain_log[16];
static int chain_len;
static void *chain_b_ctx;

static void chain_a(fs_transfer t) {          /* t.from = main, t.data = unused */
    void *main_ctx = t.from;
    chain_log[chain_len++] = 'A';
    /* A -> B, handing B the main context */
    t = fs_jump_context(chain_b_ctx, main_ctx);
    /* resumed by B (t.from = B), B passed the main context back */
    chain_log[chain_len++] = 'a';
    fs_jump_context(t.data, (void *)0xA0A0);
    abort();
}

static void chain_b(fs_transfer t) {          /* t.from = A, t.data = main */
    void *a_ctx = t.from;
    chain_log[chain_len++] = 'B';
    t = fs_jump_context(t.data, (void *)0xB0B0);  /* B -> main */
    /* resumed by main, t.data = main ctx to hand back to A */
    chain_log[chain_len++] = 'b';
    fs_jump_context(a_ctx, t.from);               /* B -> A, pass main */
    abort();
}

static void test_chain(void) {
    test_stack sa = stack_new(), sb = stack_new();
    void *a = fs_make_context(sa.top, STACK_SIZE, chain_a);
    chain_b_ctx = fs_make_context(sb.top, STACK_SIZE, chain_b);
    fs_transfer r1 = fs_jump_context(a, NULL);            /* main -> A -> B -> main */
    int ok = (uintptr_t)r1.data == 0xB0B0;
    fs_transfer r2 = fs_jump_context(r1.from, NULL);      /* main -> B -> A -> main */
    ok = ok && (uintptr_t)r2.data == 0xA0A0;
    chain_log[chain_len] = 0;
    ok = ok && strcmp(chain_log, "ABba") == 0;
    char why[96];
    snprintf(why, sizeof why, "log=%s data1=%p data2=%p", chain_log, r1.data, r2.data);
    report("fiber_to_fiber_chain", ok, why);
    stack_free(sa); stack_free(sb);
}

/* ---- 3. callee-saved registers ------------------------------------------
 *
 * regs_jump(to, data, out, seed) is written in assembly so the compiler can
 * not interfere: it loads seed+k into every callee-saved register, calls
 * fs_jump_context(to, data), stores the registers as found after resuming
 * into out[], restores the caller's registers and returns the transfer.
 * Both main and the fiber use it with different seeds, so each side
 * clobbers all of the other's callee-saved registers.
 */
fs_transfer regs_jump(void *to, void *data, uint64_t *out, uint64_t seed);

#if defined(__x86_64__)
#define NREGS 6
static const char *const reg_names[NREGS] = { "rbx", "rbp", "r12", "r13", "r14", "r15" };
__asm__(
    "   .text\n"
    "   .p2align 4\n"
    "   .globl regs_jump\n"
    "   .type regs_jump, @function\n"
    "regs_jump:\n"
    "   pushq %rbp\n"
    "   pushq %rbx\n"
    "   pushq %r12\n"
    "   pushq %r13\n"
    "   pushq %r14\n"
    "   pushq %r15\n"
    "   pushq %rdx\n"                  /* out; 7 pushes -> rsp 16-aligned for the call */
    "   leaq 1(%rcx), %rbx\n"
    "   leaq 2(%rcx), %rbp\n"
    "   leaq 3(%rcx), %r12\n"
    "   leaq 4(%rcx), %r13\n"
    "   leaq 5(%rcx), %r14\n"
    "   leaq 6(%rcx), %r15\n"
    "   call fs_jump_context@PLT\n"    /* preserves rax:rdx result below */
    "   movq (%rsp), %rcx\n"
    "   movq %rbx, 0(%rcx)\n"
    "   movq %rbp, 8(%rcx)\n"
    "   movq %r12, 16(%rcx)\n"
    "   movq %r13, 24(%rcx)\n"
    "   movq %r14, 32(%rcx)\n"
    "   movq %r15, 40(%rcx)\n"
    "   addq $8, %rsp\n"
    "   popq %r15\n"
    "   popq %r14\n"
    "   popq %r13\n"
    "   popq %r12\n"
    "   popq %rbx\n"
    "   popq %rbp\n"
    "   ret\n"
    "   .size regs_jump, .-regs_jump\n");
static uint64_t reg_expected(uint64_t seed, int i) { return seed + 1 + (uint64_t)i; }
#else /* __aarch64__ */
#define NREGS 19
static const char *const reg_names[NREGS] = {
    "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29",
    "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15" };
__asm__(
    "   .text\n"
    "   .p2align 4\n"
    "   .globl regs_jump\n"
    "   .type regs_jump, %function\n"
    "regs_jump:\n"
    "   stp x29, x30, [sp, #-0xb0]!\n"
    "   stp x19, x20, [sp, #0x10]\n"
    "   stp x21, x22, [sp, #0x20]\n"
    "   stp x23, x24, [sp, #0x30]\n"
    "   stp x25, x26, [sp, #0x40]\n"
    "   stp x27, x28, [sp, #0x50]\n"
    "   stp d8,  d9,  [sp, #0x60]\n"
    "   stp d10, d11, [sp, #0x70]\n"
    "   stp d12, d13, [sp, #0x80]\n"
    "   stp d14, d15, [sp, #0x90]\n"
    "   str x2, [sp, #0xa0]\n"
    "   add x19, x3, #1\n"
    "   add x20, x3, #2\n"
    "   add x21, x3, #3\n"
    "   add x22, x3, #4\n"
    "   add x23, x3, #5\n"
    "   add x24, x3, #6\n"
    "   add x25, x3, #7\n"
    "   add x26, x3, #8\n"
    "   add x27, x3, #9\n"
    "   add x28, x3, #10\n"
    "   add x29, x3, #11\n"
    "   add x9, x3, #12\n   fmov d8,  x9\n"
    "   add x9, x3, #13\n   fmov d9,  x9\n"
    "   add x9, x3, #14\n   fmov d10, x9\n"
    "   add x9, x3, #15\n   fmov d11, x9\n"
    "   add x9, x3, #16\n   fmov d12, x9\n"
    "   add x9, x3, #17\n   fmov d13, x9\n"
    "   add x9, x3, #18\n   fmov d14, x9\n"
    "   add x9, x3, #19\n   fmov d15, x9\n"
    "   bl fs_jump_context\n"          /* result in x0:x1, untouched below */
    "   ldr x2, [sp, #0xa0]\n"
    "   stp x19, x20, [x2, #0x00]\n"
    "   stp x21, x22, [x2, #0x10]\n"
    "   stp x23, x24, [x2, #0x20]\n"
    "   stp x25, x26, [x2, #0x30]\n"
    "   stp x27, x28, [x2, #0x40]\n"
    "   str x29,      [x2, #0x50]\n"
    "   stp d8,  d9,  [x2, #0x58]\n"
    "   stp d10, d11, [x2, #0x68]\n"
    "   stp d12, d13, [x2, #0x78]\n"
    "   stp d14, d15, [x2, #0x88]\n"
    "   ldp x19, x20, [sp, #0x10]\n"
    "   ldp x21, x22, [sp, #0x20]\n"
    "   ldp x23, x24, [sp, #0x30]\n"
    "   ldp x25, x26, [sp, #0x40]\n"
    "   ldp x27, x28, [sp, #0x50]\n"
    "   ldp d8,  d9,  [sp, #0x60]\n"
    "   ldp d10, d11, [sp, #0x70]\n"
    "   ldp d12, d13, [sp, #0x80]\n"
    "   ldp d14, d15, [sp, #0x90]\n"
    "   ldp x29, x30, [sp], #0xb0\n"
    "   ret\n"
    "   .size regs_jump, .-regs_jump\n");
static uint64_t reg_expected(uint64_t seed, int i) { return seed + 1 + (uint64_t)i; }
#endif

#define REGS_ROUNDS 100
#define MAIN_SEED  0x1111111100000000ull
#define FIBER_SEED 0x2222222200000000ull
static int regs_fiber_errors;
static char regs_fiber_why[128];

static void check_regs(const uint64_t *out, uint64_t seed, int *errors, char *why, size_t whylen) {
    for (int i = 0; i < NREGS; i++) {
        if (out[i] != reg_expected(seed, i)) {
            if (*errors == 0)
                snprintf(why, whylen, "%s = %#llx, expected %#llx", reg_names[i],
                         (unsigned long long)out[i], (unsigned long long)reg_expected(seed, i));
            (*errors)++;
        }
    }
}

static void regs_entry(fs_transfer t) {
    uint64_t out[NREGS];
    for (uint64_t round = 0;; round++) {
        uint64_t seed = FIBER_SEED + (round << 8);
        t = regs_jump(t.from, t.data, out, seed);
        check_regs(out, seed, &regs_fiber_errors, regs_fiber_why, sizeof regs_fiber_why);
    }
}

static void test_callee_saved(void) {
    test_stack s = stack_new();
    void *ctx = fs_make_context(s.top, STACK_SIZE, regs_entry);
    uint64_t out[NREGS];
    int errors = 0;
    char why[128] = "";
    for (uint64_t round = 0; round < REGS_ROUNDS; round++) {
        uint64_t seed = MAIN_SEED + (round << 8);
        memset(out, 0, sizeof out);
        fs_transfer r = regs_jump(ctx, (void *)round, out, seed);
        ctx = r.from;
        check_regs(out, seed, &errors, why, sizeof why);
    }
    char msg[300];
    snprintf(msg, sizeof msg, "main: %d errors (%s); fiber: %d errors (%s)",
             errors, why, regs_fiber_errors, regs_fiber_why);
    report(
#if defined(__x86_64__)
        "callee_saved_rbx_rbp_r12_r15_preserved",
#else
        "callee_saved_x19_x29_d8_d15_preserved",
#endif
        errors == 0 && regs_fiber_errors == 0, msg);
    stack_free(s);
}

/* ---- 4. FP control state is per context (x86_64: MXCSR + x87 CW) -------- */

#if defined(__x86_64__)
#define MXCSR_RC_MASK   0x6000u
#define MXCSR_RC_ZERO   0x6000u
#define MXCSR_FLAGS     0x003fu         /* sticky exception flags: not compared */
#define FCW_PC_MASK     0x0300u
#define FCW_PC_SINGLE   0x0000u

static uint16_t get_fcw(void) { uint16_t cw; __asm__ volatile("fnstcw %0" : "=m"(cw)); return cw; }
static void set_fcw(uint16_t cw) { __asm__ volatile("fldcw %0" : : "m"(cw)); }

static volatile float f_one = 1.0f, f_ten = 10.0f;
static volatile long double ld_one = 1.0L, ld_ten = 10.0L;

typedef struct {
    unsigned mxcsr_set, mxcsr_seen_after_resume;
    uint16_t fcw_set, fcw_seen_after_resume;
    float q_first, q_after_resume;
    long double ldq_first, ldq_after_resume;
} fp_report;

static fp_report fp_rep;

static void fp_entry(fs_transfer t) {
    fp_rep.mxcsr_set = (_mm_getcsr() & ~MXCSR_RC_MASK) | MXCSR_RC_ZERO;
    _mm_setcsr(fp_rep.mxcsr_set);
    fp_rep.fcw_set = (uint16_t)((get_fcw() & ~FCW_PC_MASK) | FCW_PC_SINGLE);
    set_fcw(fp_rep.fcw_set);
    fp_rep.q_first = f_one / f_ten;
    fp_rep.ldq_first = ld_one / ld_ten;
    t = fs_jump_context(t.from, NULL);
    fp_rep.mxcsr_seen_after_resume = _mm_getcsr();
    fp_rep.fcw_seen_after_resume = get_fcw();
    fp_rep.q_after_resume = f_one / f_ten;
    fp_rep.ldq_after_resume = ld_one / ld_ten;
    fs_jump_context(t.from, NULL);
    abort();
}

static void test_fp_control(void) {
    test_stack s = stack_new();
    unsigned mx0 = _mm_getcsr();
    uint16_t cw0 = get_fcw();
    float q0 = f_one / f_ten;
    long double ldq0 = ld_one / ld_ten;

    void *ctx = fs_make_context(s.top, STACK_SIZE, fp_entry);
    fs_transfer r = fs_jump_context(ctx, NULL);
    unsigned mx1 = _mm_getcsr();
    uint16_t cw1 = get_fcw();
    float q1 = f_one / f_ten;
    long double ldq1 = ld_one / ld_ten;

    r = fs_jump_context(r.from, NULL);
    unsigned mx2 = _mm_getcsr();
    uint16_t cw2 = get_fcw();
    (void)r;

    int main_ok = ((mx1 ^ mx0) & ~MXCSR_FLAGS) == 0 && cw1 == cw0 &&
                  ((mx2 ^ mx0) & ~MXCSR_FLAGS) == 0 && cw2 == cw0 &&
                  q1 == q0 && ldq1 == ldq0;
    int fiber_ok = ((fp_rep.mxcsr_seen_after_resume ^ fp_rep.mxcsr_set) & ~MXCSR_FLAGS) == 0 &&
                   fp_rep.fcw_seen_after_resume == fp_rep.fcw_set &&
                   fp_rep.q_after_resume == fp_rep.q_first &&
                   fp_rep.ldq_after_resume == fp_rep.ldq_first;
    /* The modes really took effect: 1/10 rounds up under round-to-nearest,
     * truncates under round-toward-zero; single precision changes 1.0L/10. */
    int modes_effective = fp_rep.q_first != q0 && fp_rep.ldq_first != ldq0;

    char why[300];
    snprintf(why, sizeof why,
             "main mxcsr %#x -> %#x -> %#x, fcw %#x -> %#x -> %#x; fiber set mxcsr %#x saw %#x, "
             "set fcw %#x saw %#x; q main %a/%a fiber %a/%a",
             mx0, mx1, mx2, cw0, cw1, cw2, fp_rep.mxcsr_set, fp_rep.mxcsr_seen_after_resume,
             fp_rep.fcw_set, fp_rep.fcw_seen_after_resume, q0, q1, fp_rep.q_first,
             fp_rep.q_after_resume);
    report("fp_control_mxcsr_x87cw_per_context", main_ok && fiber_ok && modes_effective, why);
    stack_free(s);
}
#endif

/* ---- 5. first frame: stack alignment inside entry ------------------------ */

uintptr_t cs_probe_sp;                        /* sp at the first instruction of entry */
void align_c_entry(fs_transfer t);
void align_probe_entry(fs_transfer t);

#if defined(__x86_64__)
__asm__(
    "   .text\n"
    "   .p2align 4\n"
    "   .globl align_probe_entry\n"
    "   .type align_probe_entry, @function\n"
    "align_probe_entry:\n"
    "   movq %rsp, cs_probe_sp(%rip)\n"
    "   jmp align_c_entry\n"
    "   .size align_probe_entry, .-align_probe_entry\n");
#define ENTRY_SP_MOD16 8                       /* as if just called: return address pushed */
#else
__asm__(
    "   .text\n"
    "   .p2align 4\n"
    "   .globl align_probe_entry\n"
    "   .type align_probe_entry, %function\n"
    "align_probe_entry:\n"
    "   mov x9, sp\n"
    "   adrp x10, cs_probe_sp\n"
    "   str x9, [x10, :lo12:cs_probe_sp]\n"
    "   b align_c_entry\n"
    "   .size align_probe_entry, .-align_probe_entry\n");
#define ENTRY_SP_MOD16 0
#endif

static uintptr_t align_frame_addr, align_local_addr, align_inner_local_addr;
static float align_sum;

__attribute__((noinline)) static void align_inner(void) {
    float buf[4] __attribute__((aligned(16)));
    align_inner_local_addr = (uintptr_t)buf;
#if defined(__x86_64__)
    __m128 v = _mm_set_ps(4.0f, 3.0f, 2.0f, 1.0f);
    _mm_store_ps(buf, v);                         /* movaps: faults if misaligned */
    __asm__ volatile("movaps %%xmm0, %0" : "=m"(*(__m128 *)buf) : : );  /* explicit aligned store */
    _mm_store_ps(buf, v);
#else
    float32x4_t v = { 1.0f, 2.0f, 3.0f, 4.0f };
    vst1q_f32(buf, v);
#endif
    __asm__ volatile("" : : "r"(buf) : "memory");
    align_sum = buf[0] + buf[1] + buf[2] + buf[3];
}

void align_c_entry(fs_transfer t) {
    float local[4] __attribute__((aligned(16))) = { 0 };
    align_frame_addr = (uintptr_t)__builtin_frame_address(0);
    align_local_addr = (uintptr_t)local;
    __asm__ volatile("" : : "r"(local) : "memory");
    align_inner();
    fs_jump_context(t.from, (void *)0xA11);
    abort();
}

static void test_alignment(void) {
    test_stack s = stack_new();
    /* Deliberately misaligned top: fs_make_context must align it itself. */
    void *ctx = fs_make_context((char *)s.top - 8, STACK_SIZE - 8, align_probe_entry);
    fs_transfer r = fs_jump_context(ctx, NULL);
    int ok = (uintptr_t)r.data == 0xA11 &&
             cs_probe_sp % 16 == ENTRY_SP_MOD16 &&
             align_frame_addr % 16 == 0 && align_local_addr % 16 == 0 &&
             align_inner_local_addr % 16 == 0 && align_sum == 10.0f &&
             cs_probe_sp < (uintptr_t)s.top - 8 && cs_probe_sp > (uintptr_t)s.top - 512;
    char why[200];
    snprintf(why, sizeof why, "sp at entry %%16 = %u (want %d), frame %%16 = %u, local %%16 = %u, inner %%16 = %u, sum %g",
             (unsigned)(cs_probe_sp % 16), ENTRY_SP_MOD16, (unsigned)(align_frame_addr % 16),
             (unsigned)(align_local_addr % 16), (unsigned)(align_inner_local_addr % 16), align_sum);
    report("first_frame_stack_alignment", ok, why);
    stack_free(s);
}

/* ---- 6. unwinding inside a fiber stops cleanly at the trampoline -------- */

typedef struct { int frames; } unwind_state;
static _Unwind_Reason_Code unwind_cb(struct _Unwind_Context *uc, void *arg) {
    (void)uc;
    unwind_state *st = arg;
    if (++st->frames > 64) return _URC_NORMAL_STOP;  /* runaway: treated as failure */
    return _URC_NO_REASON;
}

static int unwind_frames;
static _Unwind_Reason_Code unwind_rc;

/* Break here in gdb: `break fiber_backtrace_leaf` shows the fiber's call chain. */
__attribute__((noinline)) void fiber_backtrace_leaf(void) {
    unwind_state st = { 0 };
    unwind_rc = _Unwind_Backtrace(unwind_cb, &st);
    unwind_frames = st.frames;
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void fiber_backtrace_mid(void) {
    fiber_backtrace_leaf();
    __asm__ volatile("" ::: "memory");
}

void fiber_backtrace_entry(fs_transfer t) {
    fiber_backtrace_mid();
    fs_jump_context(t.from, NULL);
    abort();
}

static void test_unwind(void) {
    test_stack s = stack_new();
    void *ctx = fs_make_context(s.top, STACK_SIZE, fiber_backtrace_entry);
    fs_jump_context(ctx, NULL);
    /* frames: leaf, mid, entry, trampoline (+ _Unwind_Backtrace's own frame
     * on some unwinders) -- then END_OF_STACK, never the main stack. */
    int ok = unwind_rc == _URC_END_OF_STACK && unwind_frames >= 4 && unwind_frames <= 6;
    char why[96];
    snprintf(why, sizeof why, "_Unwind_Backtrace rc=%d frames=%d (want END_OF_STACK=%d, 4..6 frames)",
             (int)unwind_rc, unwind_frames, (int)_URC_END_OF_STACK);
    report("unwind_stops_at_trampoline", ok, why);
    stack_free(s);
}

/* ---- 7. entry returning aborts (in a child process) --------------------- */

static void returning_entry(fs_transfer t) { (void)t; }

static void test_entry_return_aborts(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { report("entry_return_aborts", 0, "fork failed"); return; }
    if (pid == 0) {
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        test_stack s = stack_new();
        void *ctx = fs_make_context(s.top, STACK_SIZE, returning_entry);
        fs_jump_context(ctx, NULL);
        _exit(0);                               /* not reached */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    char why[96];
    snprintf(why, sizeof why, "child status %#x (want killed by SIGABRT)", status);
    report("entry_return_aborts", WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, why);
}

/* ---- 8. timing (report only) ------------------------------------------- */

static void bench_entry(fs_transfer t) {
    for (;;) t = fs_jump_context(t.from, t.data);
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void bench(void) {
    long iters = 10000000;
    const char *env = getenv("CS_BENCH_ITERS");
    if (env && *env) iters = atol(env);
    test_stack s = stack_new();
    void *ctx = fs_make_context(s.top, STACK_SIZE, bench_entry);
    for (long i = 0; i < 100000; i++) ctx = fs_jump_context(ctx, (void *)i).from;  /* warm-up */
    double t0 = now_ns();
    uintptr_t sum = 0;
    for (long i = 0; i < iters; i++) {
        fs_transfer r = fs_jump_context(ctx, (void *)i);
        ctx = r.from;
        sum += (uintptr_t)r.data;
    }
    double t1 = now_ns();
    double ns = (t1 - t0) / (double)iters / 2.0;
    printf("round_trips=%ld checksum_ok=%d\n", iters,
           sum == (uintptr_t)iters * (uintptr_t)(iters - 1) / 2);
    printf("switch_ns=%.2f\n", ns);
    stack_free(s);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_pingpong();
    test_chain();
    test_callee_saved();
#if defined(__x86_64__)
    test_fp_control();
#endif
    test_alignment();
    test_unwind();
    test_entry_return_aborts();
    bench();
    printf("test summary: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
