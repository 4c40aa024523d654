#define _GNU_SOURCE
#include "thread_support.h"

#include <errno.h>
#include <sys/prctl.h>

int fs_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, name, 0, 0, 0) == 0 ? 0 : errno;
}
