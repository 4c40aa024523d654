// numa-vm-probe: prints what the kernel/libnuma report about NUMA nodes and
// checks page placement, in machine-readable lines.  Used by
// scripts/numa-vm-selftest inside scripts/numa-vm.
//
//   nodes configured=<n> max_node=<n> possible=<n> page_size=<bytes>
//   node=<n> online=<0|1> has_memory=<0|1> mem_total_mb=<MiB> cpus=<list|none>
//   cpu=<c> node=<n>
//   bind node=<n> pages=64 on_node=<count> [elsewhere=<node>:<count>...]
//   bind node=<n> error=<ERRNO>           (mbind MPOL_BIND refused)
//   preferred node=<n> pages=64 on_node=<count> [elsewhere=...] | error=<ERRNO>
//   local cpu=<c> node=<n> pages=64 landed=<node>:<count>[,...]
//   args <argc-1> / arg<i>=<value>        (echo of argv, for quoting checks)
//   probe: stderr line                    (on stderr)
//   done
//
// Options: --exit N (exit with N after probing), --quiet (only echo args).
#define _GNU_SOURCE
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 64

static const char *errname(int e) {
    switch (e) {
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case ENOMEM: return "ENOMEM";
    case EFAULT: return "EFAULT";
    case ENOENT: return "ENOENT";
    case ENOSYS: return "ENOSYS";
    case EIO: return "EIO";
    case EXDEV: return "EXDEV";
    default: return "E?";
    }
}

// Parses a kernel node/CPU list ("0-1,3") from a sysfs file; returns whether
// `id` is in it.
static int sysfs_list_has(const char *path, int id) {
    char buf[4096];
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = buf;
    while (*p && *p != '\n') {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p) break;
        p = end;
        if (*p == '-') { hi = strtol(p + 1, &end, 10); p = end; }
        if (id >= lo && id <= hi) return 1;
        if (*p == ',') p++;
    }
    return 0;
}

static void print_cpus(struct bitmask *m) {
    int first = 1, ncpu = numa_num_possible_cpus();
    for (int c = 0; c < ncpu; c++) {
        if (!numa_bitmask_isbitset(m, c)) continue;
        int e = c;
        while (e + 1 < ncpu && numa_bitmask_isbitset(m, e + 1)) e++;
        printf("%s%d", first ? "" : ",", c);
        if (e > c) printf("-%d", e);
        first = 0;
        c = e;
    }
    if (first) printf("none");
}

// Queries the node of each page (move_pages with nodes == NULL) and prints
// "on_node=<k> [elsewhere=<n>:<k>...]" relative to `want`.
static int report_pages(void **pages, int want) {
    int status[NPAGES];
    if (move_pages(0, NPAGES, pages, NULL, status, 0) != 0) {
        printf(" move_pages_error=%s\n", errname(errno));
        return -1;
    }
    int on = 0, counts[1024] = {0};
    for (int i = 0; i < NPAGES; i++) {
        if (status[i] == want) on++;
        else if (status[i] >= 0 && status[i] < 1024) counts[status[i]]++;
        else printf(" page%d_status=%s", i, errname(-status[i]));
    }
    printf(" pages=%d on_node=%d", NPAGES, on);
    for (int n = 0; n < 1024; n++)
        if (counts[n]) printf(" elsewhere=%d:%d", n, counts[n]);
    printf("\n");
    return on;
}

// mmaps NPAGES pages, applies `mode` for `node` before touching them,
// touches them and reports where they landed.
static void try_policy(const char *label, int mode, int node, long pagesz) {
    size_t len = (size_t)NPAGES * pagesz;
    char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { printf("%s node=%d error=mmap:%s\n", label, node, errname(errno)); return; }
    unsigned long mask[16] = {0};
    mask[node / (8 * sizeof(unsigned long))] |= 1UL << (node % (8 * sizeof(unsigned long)));
    if (mbind(mem, len, mode, mask, sizeof mask * 8, 0) != 0) {
        printf("%s node=%d error=%s\n", label, node, errname(errno));
        munmap(mem, len);
        return;
    }
    void *pages[NPAGES];
    for (int i = 0; i < NPAGES; i++) { mem[(size_t)i * pagesz] = 1; pages[i] = mem + (size_t)i * pagesz; }
    printf("%s node=%d", label, node);
    report_pages(pages, node);
    munmap(mem, len);
}

// Runs on `cpu` with the default (local) policy and reports where freshly
// touched pages land: for a memoryless node this shows the fallback node.
static void try_local(int cpu, long pagesz) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) { printf("local cpu=%d error=%s\n", cpu, errname(errno)); return; }
    size_t len = (size_t)NPAGES * pagesz;
    char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return;
    void *pages[NPAGES];
    int status[NPAGES];
    for (int i = 0; i < NPAGES; i++) { mem[(size_t)i * pagesz] = 1; pages[i] = mem + (size_t)i * pagesz; }
    printf("local cpu=%d node=%d pages=%d landed=", cpu, numa_node_of_cpu(cpu), NPAGES);
    if (move_pages(0, NPAGES, pages, NULL, status, 0) != 0) { printf("error:%s\n", errname(errno)); return; }
    int counts[1024] = {0}, first = 1;
    for (int i = 0; i < NPAGES; i++) if (status[i] >= 0 && status[i] < 1024) counts[status[i]]++;
    for (int n = 0; n < 1024; n++) if (counts[n]) { printf("%s%d:%d", first ? "" : ",", n, counts[n]); first = 0; }
    printf("\n");
    munmap(mem, len);
}

int main(int argc, char **argv) {
    int exit_code = 0, quiet = 0;
    printf("args %d\n", argc - 1);
    for (int i = 1; i < argc; i++) printf("arg%d=%s\n", i, argv[i]);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--exit") && i + 1 < argc) exit_code = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quiet")) quiet = 1;
    }
    fprintf(stderr, "probe: stderr line\n");
    if (quiet) { printf("done\n"); return exit_code; }

    if (numa_available() < 0) { printf("numa_available=-1\n"); return 1; }
    long pagesz = sysconf(_SC_PAGESIZE);
    int max = numa_max_node();
    printf("nodes configured=%d max_node=%d possible=%d page_size=%ld\n",
           numa_num_configured_nodes(), max, numa_max_possible_node() + 1, pagesz);

    struct bitmask *cpus = numa_allocate_cpumask();
    int memnodes[1024] = {0}, cpunode_first_cpu[1024];
    for (int n = 0; n <= max; n++) {
        char path[128];
        snprintf(path, sizeof path, "/sys/devices/system/node/node%d", n);
        int online = access(path, F_OK) == 0;
        int has_mem = sysfs_list_has("/sys/devices/system/node/has_memory", n);
        long long freeb = 0, total = online ? numa_node_size64(n, &freeb) : 0;
        if (total < 0) total = 0;
        memnodes[n] = has_mem && total > 0;
        numa_bitmask_clearall(cpus);
        cpunode_first_cpu[n] = -1;
        if (online) numa_node_to_cpus(n, cpus);
        for (int c = 0; c < numa_num_possible_cpus(); c++)
            if (numa_bitmask_isbitset(cpus, c)) { cpunode_first_cpu[n] = c; break; }
        printf("node=%d online=%d has_memory=%d mem_total_mb=%lld cpus=", n, online, has_mem, total >> 20);
        print_cpus(cpus);
        printf("\n");
    }
    for (int c = 0; c < numa_num_configured_cpus(); c++) printf("cpu=%d node=%d\n", c, numa_node_of_cpu(c));
    fflush(stdout);

    for (int n = 0; n <= max; n++) {
        if (memnodes[n]) {
            try_policy("bind", MPOL_BIND, n, pagesz);
        } else {
            // Memoryless (or offline) node: what does binding to it do?
            try_policy("bind", MPOL_BIND, n, pagesz);
            try_policy("preferred", MPOL_PREFERRED, n, pagesz);
        }
        fflush(stdout);
    }
    for (int n = 0; n <= max; n++)
        if (cpunode_first_cpu[n] >= 0) try_local(cpunode_first_cpu[n], pagesz);
    printf("done\n");
    return exit_code;
}
