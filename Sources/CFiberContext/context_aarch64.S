/*
 * context_aarch64.S - fiber context switch, AArch64 AAPCS64 (ELF).
 *
 * Model: Boost.Context make_fcontext/jump_fcontext. A suspended context is
 * represented by its stack pointer, which points at this 160-byte frame:
 *
 *   0x00  d8,  d9        0x40  x19, x20       0x80  x27, x28
 *   0x10  d10, d11       0x50  x21, x22       0x90  x29 (fp), x30 (lr)
 *   0x20  d12, d13       0x60  x23, x24
 *   0x30  d14, d15       0x70  x25, x26
 *
 * The saved x30 is also the resume address. Resuming ends with `br x30`
 * (an indirect branch, predicted by the branch target buffer) rather than
 * `ret`, whose return-stack prediction is always wrong after a stack switch.
 *
 * FPCR/FPSR are not saved (AAPCS64 treats them as thread-global state).
 *
 * `bti c` / `bti j` landing pads are emitted (they are NOPs on cores without
 * BTI), but no .note.gnu.property is: returning into the resumed context with
 * `br` lands on an ordinary call-return site, which a BTI-guarded page would
 * reject, so the object must not claim BTI compatibility.
 */
#if defined(__aarch64__)

        .text

/* ------------------------------------------------------------------------
 * fs_transfer fs_jump_context(void *to (x0), void *data (x1))
 *   returns { from (x0), data (x1) }
 * ---------------------------------------------------------------------- */
        .globl  fs_jump_context
        .type   fs_jump_context, %function
        .p2align 4
fs_jump_context:
        .cfi_startproc
        hint    #34                             /* bti c */
        sub     sp, sp, #0xa0
        .cfi_def_cfa_offset 0xa0
        stp     d8,  d9,  [sp, #0x00]
        stp     d10, d11, [sp, #0x10]
        stp     d12, d13, [sp, #0x20]
        stp     d14, d15, [sp, #0x30]
        stp     x19, x20, [sp, #0x40]
        stp     x21, x22, [sp, #0x50]
        stp     x23, x24, [sp, #0x60]
        stp     x25, x26, [sp, #0x70]
        stp     x27, x28, [sp, #0x80]
        stp     x29, x30, [sp, #0x90]
        .cfi_offset d8,  -0xa0
        .cfi_offset d9,  -0x98
        .cfi_offset d10, -0x90
        .cfi_offset d11, -0x88
        .cfi_offset d12, -0x80
        .cfi_offset d13, -0x78
        .cfi_offset d14, -0x70
        .cfi_offset d15, -0x68
        .cfi_offset x19, -0x60
        .cfi_offset x20, -0x58
        .cfi_offset x21, -0x50
        .cfi_offset x22, -0x48
        .cfi_offset x23, -0x40
        .cfi_offset x24, -0x38
        .cfi_offset x25, -0x30
        .cfi_offset x26, -0x28
        .cfi_offset x27, -0x20
        .cfi_offset x28, -0x18
        .cfi_offset x29, -0x10
        .cfi_offset x30, -0x08

        mov     x9, sp                          /* from = our saved frame */
        mov     sp, x0                          /* switch stacks; the other frame has the same layout */

        ldp     d8,  d9,  [sp, #0x00]
        ldp     d10, d11, [sp, #0x10]
        ldp     d12, d13, [sp, #0x20]
        ldp     d14, d15, [sp, #0x30]
        ldp     x19, x20, [sp, #0x40]
        ldp     x21, x22, [sp, #0x50]
        ldp     x23, x24, [sp, #0x60]
        ldp     x25, x26, [sp, #0x70]
        ldp     x27, x28, [sp, #0x80]
        ldp     x29, x30, [sp, #0x90]
        add     sp, sp, #0xa0
        .cfi_def_cfa_offset 0
        .cfi_restore d8
        .cfi_restore d9
        .cfi_restore d10
        .cfi_restore d11
        .cfi_restore d12
        .cfi_restore d13
        .cfi_restore d14
        .cfi_restore d15
        .cfi_restore x19
        .cfi_restore x20
        .cfi_restore x21
        .cfi_restore x22
        .cfi_restore x23
        .cfi_restore x24
        .cfi_restore x25
        .cfi_restore x26
        .cfi_restore x27
        .cfi_restore x28
        .cfi_restore x29
        .cfi_restore x30                        /* lr holds the resume address */

        /* x0 = from, x1 = data: the return value of a resumed fs_jump_context,
         * or the fs_transfer argument of a fresh context's entry. */
        mov     x0, x9
        br      x30
        .cfi_endproc
        .size   fs_jump_context, .-fs_jump_context

/* ------------------------------------------------------------------------
 * void *fs_make_context(void *stack_top (x0), size_t size (x1), fs_entry entry (x2))
 * ---------------------------------------------------------------------- */
        .globl  fs_make_context
        .type   fs_make_context, %function
        .p2align 4
fs_make_context:
        .cfi_startproc
        hint    #34                             /* bti c */
        and     x0, x0, #0xfffffffffffffff0     /* 16-byte align the top */
        sub     x0, x0, #0xb0                   /* 0x10 zeroed pad + 0xa0 frame */
        stp     xzr, xzr, [x0, #0x00]           /* d8-d15 */
        stp     xzr, xzr, [x0, #0x10]
        stp     xzr, xzr, [x0, #0x20]
        stp     xzr, xzr, [x0, #0x30]
        stp     x2,  xzr, [x0, #0x40]           /* x19 = entry, x20 */
        stp     xzr, xzr, [x0, #0x50]           /* x21-x28 */
        stp     xzr, xzr, [x0, #0x60]
        stp     xzr, xzr, [x0, #0x70]
        stp     xzr, xzr, [x0, #0x80]
        adr     x3, .Lfs_trampoline_entry
        stp     xzr, x3,  [x0, #0x90]           /* x29 = 0 (end of fp chain), x30 = resume address */
        stp     xzr, xzr, [x0, #0xa0]           /* pad (where sp lands) */
        ret
        .cfi_endproc
        .size   fs_make_context, .-fs_make_context

/* ------------------------------------------------------------------------
 * First frame of every fiber. Entered by the `br x30` of fs_jump_context
 * with sp 16-byte aligned, x0 = from, x1 = data, x19 = entry, x29 = 0.
 * lr is marked undefined so unwinders stop here: this is the outermost frame.
 * ---------------------------------------------------------------------- */
        .type   fs_context_trampoline, %function
        .p2align 4
fs_context_trampoline:
        .cfi_startproc
        .cfi_undefined x30
        /* Padding so that "resume address - 1" still falls inside this FDE
         * while the fiber is suspended before its first run. */
        nop
.Lfs_trampoline_entry:
        hint    #36                             /* bti j: reached by `br` */
        mov     x29, xzr                        /* zero fp and lr: end of call chain */
        mov     x30, xzr
        blr     x19                             /* entry(fs_transfer{from, data}); must not return */
        bl      abort
        brk     #0x1
        .cfi_endproc
        .size   fs_context_trampoline, .-fs_context_trampoline

#endif /* __aarch64__ */

        .section .note.GNU-stack,"",%progbits
