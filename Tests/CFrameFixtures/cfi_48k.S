// fs_fixture_cfi_48k: a 48 KiB frame in one stack pointer subtraction, described only by the CFA
// offset from the stack pointer (no frame pointer).
    .text
    .globl fs_fixture_cfi_48k
    .type fs_fixture_cfi_48k, %function
fs_fixture_cfi_48k:
    .cfi_startproc
#if defined(__x86_64__)
    sub $49152, %rsp
    .cfi_def_cfa_offset 49160
    add $49152, %rsp
    .cfi_def_cfa_offset 8
    ret
#elif defined(__aarch64__)
    sub sp, sp, #12, lsl #12
    .cfi_def_cfa_offset 49152
    add sp, sp, #12, lsl #12
    .cfi_def_cfa_offset 0
    ret
#endif
    .cfi_endproc
    .size fs_fixture_cfi_48k, . - fs_fixture_cfi_48k

    .section .note.GNU-stack, "", %progbits
