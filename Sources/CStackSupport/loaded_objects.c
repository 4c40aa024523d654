#define _GNU_SOURCE
#include "loaded_objects.h"

#include <link.h>
#include <sys/auxv.h>

struct walk {
    int (*visit)(const fs_loaded_object *, void *);
    void *context;
};

static int visit_one(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct walk *walk = data;
    fs_loaded_object object = {
        .bias = (uintptr_t)info->dlpi_addr,
        .name = info->dlpi_name ? info->dlpi_name : "",
        .headers = info->dlpi_phdr,
        .header_count = info->dlpi_phnum,
    };
    return walk->visit(&object, walk->context);
}

int fs_loaded_objects_iterate(int (*visit)(const fs_loaded_object *object, void *context), void *context) {
    struct walk walk = {visit, context};
    return dl_iterate_phdr(visit_one, &walk);
}

uintptr_t fs_vdso_base(void) { return (uintptr_t)getauxval(AT_SYSINFO_EHDR); }
