// hugetlbfs.h is not self-contained: it uses size_t and off_t without including their headers.
#include <stddef.h>
#include <sys/types.h>
#include <hugetlbfs.h>
