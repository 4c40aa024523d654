// The process-wide registry of stack guard ranges, read by the overflow signal handler.
//
// Writers (a stack's owner: add when it is made, remove when it goes) serialize on a mutex. Readers never lock,
// never allocate and never touch freed memory, so `fs_guard_registry_find` and `fs_guard_registry_get`
// are async-signal-safe. See docs/overflow-detection.md for the data structure and its costs.
#ifndef FIBERSTACKS_GUARD_REGISTRY_H
#define FIBERSTACKS_GUARD_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

/// Bytes of label storage per stack: at most `FS_GUARD_LABEL_CAPACITY - 1` bytes and a NUL.
#define FS_GUARD_LABEL_CAPACITY 64

/// What the registry knows about one stack: guard `[guard_low, usable_bottom)`, usable `[usable_bottom, top)`.
typedef struct fs_guard_entry {
    uintptr_t guard_low;
    uintptr_t usable_bottom;
    uintptr_t top;
    /// NUL-terminated; control characters and '"' were replaced by '?' when it was set.
    char label[FS_GUARD_LABEL_CAPACITY];
} fs_guard_entry;

/// Registers one stack. `usable_bottom` (the key) must be page-aligned and non-zero, with
/// `guard_low <= usable_bottom < top`; an empty guard (`guard_low == usable_bottom`) keeps the label
/// for `fs_guard_registry_get` and never matches a fault. `label` may be NULL; it is truncated to
/// `FS_GUARD_LABEL_CAPACITY - 1` bytes on a UTF-8 character boundary.
/// A stack registered at `usable_bottom` already is replaced: its memory was unmapped and mapped again,
/// so the newer registration describes what is there. `*registration` (if not NULL) receives this
/// registration's id, never 0, for `fs_guard_registry_remove`.
/// Returns 0, EINVAL (bad range), ENOMEM (mapping the registry's next segment or index generation failed:
/// out of memory, RLIMIT_AS or vm.max_map_count) or ENOSPC (3,221,225,472 stacks, as many as the
/// largest index holds, are registered).
int fs_guard_registry_add(uintptr_t guard_low, uintptr_t usable_bottom, uintptr_t top, const char *label,
                          size_t label_length, uint64_t *registration);

/// Removes the stack whose usable range starts at `usable_bottom`, if `registration` is the id its
/// registration returned (or 0: whichever is there). Returns 0 or ENOENT (none there, or a newer one).
int fs_guard_registry_remove(uintptr_t usable_bottom, uint64_t registration);

/// Replaces the label of the stack at `usable_bottom`. Returns 0 or ENOENT.
int fs_guard_registry_set_label(uintptr_t usable_bottom, const char *label, size_t label_length);

/// Copies the entry of the stack at `usable_bottom` into `out`. Returns 1 if found, else 0.
/// Async-signal-safe and lock-free.
int fs_guard_registry_get(uintptr_t usable_bottom, fs_guard_entry *out);

/// Copies the entry whose guard range contains `address` into `out`. Returns 1 if found, else 0.
/// Async-signal-safe and lock-free; costs at most one hash probe per system page of the largest
/// guard ever registered (16 probes for 64 KiB guards).
int fs_guard_registry_find(uintptr_t address, fs_guard_entry *out);

/// Stacks registered now.
size_t fs_guard_registry_count(void);

/// Brings into the cache the index buckets where stacks at `usable_bottoms` would be registered: for
/// an allocator that knows which stacks it hands out next. A hint only; it changes nothing.
void fs_guard_registry_prefetch(const uintptr_t *usable_bottoms, size_t count);

#endif
