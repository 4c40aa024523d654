/*
 * context_x86_64.S - fiber context switch, x86_64 System V (ELF).
 *
 * Model: Boost.Context make_fcontext/jump_fcontext. A suspended context is
 * represented by its stack pointer, which points at this 64-byte frame:
 *
 *   0x00  MXCSR (4 bytes) | x87 control word (2 bytes) | pad (2)
 *   0x08  r12
 *   0x10  r13
 *   0x18  r14
 *   0x20  r15
 *   0x28  rbx
 *   0x30  rbp
 *   0x38  resume address (the return address pushed by `call fs_jump_context`,
 *         or the trampoline entry for a fresh context)
 *
 * Resuming pops the resume address into r8 and ends with `jmp *%r8`, not
 * `ret`: the return-stack predictor would always be wrong after a stack
 * switch, an indirect jump is predicted by the BTB.
 *
 * Because the switch does not return through `ret`, it is not compatible
 * with CET (IBT/shadow stack); this file therefore does not emit a
 * .note.gnu.property, and the linker will not mark the output CET-enabled.
 */
#if defined(__x86_64__)

        .text

/* ------------------------------------------------------------------------
 * fs_transfer fs_jump_context(void *to  (rdi), void *data (rsi))
 *   returns { from (rax), data (rdx) }
 * ---------------------------------------------------------------------- */
        .globl  fs_jump_context
        .type   fs_jump_context, @function
        .p2align 4
fs_jump_context:
        .cfi_startproc
        leaq    -0x38(%rsp), %rsp               /* return address is already at 0x38 */
        .cfi_adjust_cfa_offset 0x38
        stmxcsr 0x00(%rsp)
        fnstcw  0x04(%rsp)
        movq    %r12, 0x08(%rsp)
        .cfi_rel_offset r12, 0x08
        movq    %r13, 0x10(%rsp)
        .cfi_rel_offset r13, 0x10
        movq    %r14, 0x18(%rsp)
        .cfi_rel_offset r14, 0x18
        movq    %r15, 0x20(%rsp)
        .cfi_rel_offset r15, 0x20
        movq    %rbx, 0x28(%rsp)
        .cfi_rel_offset rbx, 0x28
        movq    %rbp, 0x30(%rsp)
        .cfi_rel_offset rbp, 0x30

        movq    %rsp, %rax                      /* from = our saved frame */
        movq    %rdi, %rsp                      /* switch stacks; the other frame has the same layout */

        /* Unconditional: comparing first means reading back what stmxcsr and
         * fnstcw just stored, which measured a nanosecond slower per switch
         * than loading both (AMD EPYC, Zen). */
        ldmxcsr 0x00(%rsp)
        fldcw   0x04(%rsp)
        movq    0x08(%rsp), %r12
        movq    0x10(%rsp), %r13
        movq    0x18(%rsp), %r14
        movq    0x20(%rsp), %r15
        movq    0x28(%rsp), %rbx
        movq    0x30(%rsp), %rbp
        .cfi_restore r12                        /* registers now hold the resumed values */
        .cfi_restore r13
        .cfi_restore r14
        .cfi_restore r15
        .cfi_restore rbx
        .cfi_restore rbp
        movq    0x38(%rsp), %r8                 /* resume address */
        .cfi_register rip, r8
        leaq    0x40(%rsp), %rsp                /* pop frame + resume address */
        .cfi_def_cfa_offset 0

        /* Result for a resumed fs_jump_context caller: rax = from, rdx = data.
         * Arguments for a fresh context's entry(fs_transfer): rdi = from, rsi = data. */
        movq    %rsi, %rdx
        movq    %rax, %rdi
        jmp     *%r8
        .cfi_endproc
        .size   fs_jump_context, .-fs_jump_context

/* ------------------------------------------------------------------------
 * void *fs_make_context(void *stack_top (rdi), size_t size (rsi), fs_entry entry (rdx))
 * ---------------------------------------------------------------------- */
        .globl  fs_make_context
        .type   fs_make_context, @function
        .p2align 4
fs_make_context:
        .cfi_startproc
        movq    %rdi, %rax
        andq    $-16, %rax                      /* 16-byte align the top */
        leaq    -0x50(%rax), %rax               /* 0x10 zeroed pad + 0x40 frame */

        stmxcsr 0x00(%rax)                      /* inherit the creator's FP control state */
        fnstcw  0x04(%rax)
        xorl    %ecx, %ecx
        movq    %rcx, 0x08(%rax)                /* r12 */
        movq    %rcx, 0x10(%rax)                /* r13 */
        movq    %rcx, 0x18(%rax)                /* r14 */
        movq    %rcx, 0x20(%rax)                /* r15 */
        movq    %rdx, 0x28(%rax)                /* rbx = entry */
        movq    %rcx, 0x30(%rax)                /* rbp = 0: end of frame-pointer chain */
        leaq    .Lfs_trampoline_entry(%rip), %rdx
        movq    %rdx, 0x38(%rax)                /* resume address */
        movq    %rcx, 0x40(%rax)                /* pad (where rsp lands; 16-aligned) */
        movq    %rcx, 0x48(%rax)
        ret
        .cfi_endproc
        .size   fs_make_context, .-fs_make_context

/* ------------------------------------------------------------------------
 * First frame of every fiber. Entered by the `jmp *%r8` of fs_jump_context
 * with rsp 16-byte aligned, rdi = from, rsi = data, rbx = entry, rbp = 0.
 * The return address is marked undefined so unwinders (libgcc, gdb, the
 * Swift backtracer) stop here: this is the outermost frame of the fiber.
 * ---------------------------------------------------------------------- */
        .type   fs_context_trampoline, @function
        .p2align 4
fs_context_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        /* Padding so that "resume address - 1" (used by unwinders for caller
         * frames) still falls inside this FDE while the fiber is suspended
         * before its first run. */
        nop
.Lfs_trampoline_entry:
        call    *%rbx                           /* entry(fs_transfer{from, data}); must not return */
        call    abort@PLT                       /* rsp is 16-aligned again here */
        hlt
        .cfi_endproc
        .size   fs_context_trampoline, .-fs_context_trampoline

#endif /* __x86_64__ */

        .section .note.GNU-stack,"",%progbits
