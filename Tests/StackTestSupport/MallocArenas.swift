import CHeapProbe

/// For tests that count map lines: glibc gives a thread its own malloc arena (64 MiB reserved, two map
/// lines) at its first allocation, so a runtime thread that first allocates in the middle of a test moves
/// the count by two. With one arena for the whole process every thread allocates in mappings that already
/// exist. Call it first thing in the process that counts.
public func mallocInOneArena() {
    precondition(fs_test_malloc_in_one_arena() == 1, "mallopt(M_ARENA_MAX, 1) failed")
}
