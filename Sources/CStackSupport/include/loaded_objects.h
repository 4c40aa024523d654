// The objects loaded in this process, for the frame audit: dl_iterate_phdr(3) and getauxval(3)
// are declared only under _GNU_SOURCE / <sys/auxv.h>, which Swift's Glibc module does not see.
#ifndef FIBERSTACKS_LOADED_OBJECTS_H
#define FIBERSTACKS_LOADED_OBJECTS_H

#include <elf.h>
#include <stdint.h>

/// One loaded object: its load bias, its path as the loader knows it ("" for the executable),
/// and its program headers (in its mapped image).
typedef struct fs_loaded_object {
    uintptr_t bias;
    const char *name;
    const Elf64_Phdr *headers;
    uint16_t header_count;
} fs_loaded_object;

/// Calls `visit` for each loaded object, under the loader's lock (no object is unloaded meanwhile);
/// a non-zero return from `visit` stops the walk.
int fs_loaded_objects_iterate(int (*visit)(const fs_loaded_object *object, void *context), void *context);

/// The address of the kernel's vDSO image in this process (AT_SYSINFO_EHDR), or 0.
uintptr_t fs_vdso_base(void);

#endif
