#include <numa.h>
#include <numaif.h>

/// Whether libnuma counts `node` as configured (present in /sys/devices/system/node): reads the
/// `numa_nodes_ptr` global here, because Swift 6 refuses to touch a mutable C global.
static inline int fs_numa_node_configured(int node) {
    return node >= 0 && numa_bitmask_isbitset(numa_nodes_ptr, (unsigned int)node);
}
