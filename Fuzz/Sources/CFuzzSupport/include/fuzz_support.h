// C helpers of the fuzz targets: what must run without coverage instrumentation or heap allocation.
#ifndef FIBERSTACKS_FUZZ_SUPPORT_H
#define FIBERSTACKS_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// Counts the process's mappings and the bytes they span from /proc/self/maps. Returns 0, or the errno
/// of open/read (EINVAL for a line that does not parse). Not instrumented for coverage: the number of
/// lines would otherwise show up as new coverage and fill the corpus with noise.
int fz_mapping_census(size_t *count, uintptr_t *bytes);

/// Recurses `depth` levels, each with a frame of `frame_bytes` bytes (plus the call's own few words)
/// that it writes from its lowest address up, the way a large Swift frame may be written far end first.
/// Frames smaller than the guard therefore always touch the guard before anything below it. Returns a
/// value that depends on every frame, so no level is optimized away. Not instrumented (no ASan redzones
/// in the frames, no coverage): frame sizes are what the caller asked for.
size_t fz_recurse(size_t depth, size_t frame_bytes);

#endif
