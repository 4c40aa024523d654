// The guard registry: entries in chunks that never move or go away, found through an open-addressed
// hash index keyed by the usable bottom. Design, costs and limits: docs/overflow-detection.md.
//
// Concurrency:
// - Writers hold `writer_lock`. Every field a reader can see is written with an atomic store.
// - Each entry slot is a seqlock (`seq` odd while a writer changes it); a reader copies the slot and
//   keeps the copy only if `seq` was even and unchanged around it.
// - The index is linear probing with backward-shift deletion (no tombstones). A deletion moves
//   entries, so a reader probing meanwhile can miss a key that is present: every writer bumps
//   `index_seq` to odd before touching the index and to even after, and a reader that found nothing
//   trusts the miss only if `index_seq` was even and unchanged. A hit needs no such check: it is
//   validated against the slot itself.
// - Growth builds a twice-as-large index and publishes it with one atomic store. Old indexes and all
//   chunks are never unmapped, so a reader holding an old pointer reads valid (if stale) memory.
//
// Memory: two address-space reservations (PROT_NONE, MAP_NORESERVE) made when the library is loaded,
// one for every slot the registry can hold and one for every generation of the index, with the first
// chunk and the first index already writable. Growth makes the next piece writable with mprotect,
// which extends the writable VMA instead of adding one: the registry never changes the process's map
// count after load, and never needs a new mapping when the process is at vm.max_map_count.
#define _GNU_SOURCE
#include "guard_registry.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK_SLOTS 4096u
#define NO_SLOT UINT32_MAX
#define INITIAL_INDEX_BITS 13u
#define MAX_INDEX_BITS 23u  // 2^23 buckets at 3/4 load hold FS_GUARD_REGISTRY_MAX_ENTRIES keys
#define LABEL_WORDS (FS_GUARD_LABEL_CAPACITY / 8)

#define LOAD(p, order) __atomic_load_n((p), (order))
#define STORE(p, v, order) __atomic_store_n((p), (v), (order))
#define RELAXED __ATOMIC_RELAXED
#define ACQUIRE __ATOMIC_ACQUIRE
#define RELEASE __ATOMIC_RELEASE

/// One registered stack. Every field but `next_free` is read by lock-free readers.
struct slot {
    uint64_t seq;
    uint64_t guard_low;
    uint64_t usable_bottom;  // 0 while the slot is free
    uint64_t top;
    uint64_t label[LABEL_WORDS];
    uint32_t next_free;  // writers only: the free list
};

struct bucket {
    uint64_t key;  // usable_bottom; 0 = empty
    uint64_t slot;
};

/// One generation of the index; immutable once published.
struct hash_index {
    uint64_t mask;    // capacity - 1
    unsigned shift;   // 64 - log2(capacity)
    struct bucket *buckets;
};

// The reservations (set once by the constructor, or by the first writer if that failed).
static struct slot *slot_region;
static struct bucket *index_region;
static struct hash_index generations[MAX_INDEX_BITS + 1];

// Shared with readers (atomics only).
static uint32_t slots_ready;  // slots in writable chunks
static struct hash_index *current_index;
static uint64_t index_seq;
static uint64_t max_guard;
static uint64_t page_size;
static uint64_t live_count;
static pthread_t writer_thread;
static int writer_active;

// Writers only, under writer_lock.
static pthread_mutex_t writer_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t slots_made;
static uint32_t free_head = NO_SLOT;
static uint64_t index_used;

// MARK: - Hashing and slots

static inline uint64_t bucket_of(const struct hash_index *index, uint64_t key) {
    return ((key >> 12) * 0x9E3779B97F4A7C15ull) >> index->shift;
}

static inline struct slot *slot_at(uint32_t id) {
    return id < LOAD(&slots_ready, ACQUIRE) ? &slot_region[id] : NULL;
}

/// Copies `label` into `words`: truncated on a UTF-8 boundary, control characters and '"' made '?'.
static void encode_label(const char *label, size_t length, uint64_t words[LABEL_WORDS]) {
    unsigned char bytes[FS_GUARD_LABEL_CAPACITY];
    memset(bytes, 0, sizeof bytes);
    if (label) {
        const unsigned char *source = (const unsigned char *)label;
        size_t end = length;
        for (size_t i = 0; i < length; i++) {
            if (source[i] == 0) { end = i; break; }
        }
        if (end > FS_GUARD_LABEL_CAPACITY - 1) {
            end = FS_GUARD_LABEL_CAPACITY - 1;
            while (end > 0 && (source[end] & 0xC0) == 0x80) end--;  // do not split a character
        }
        for (size_t i = 0; i < end; i++) {
            unsigned char c = source[i];
            bytes[i] = (c < 0x20 || c == 0x7F || c == '"') ? '?' : c;
        }
    }
    memcpy(words, bytes, sizeof bytes);
}

/// Seqlock write of a whole slot (writers only).
static void slot_write(struct slot *slot, uint64_t guard_low, uint64_t usable_bottom, uint64_t top,
                       const uint64_t label[LABEL_WORDS]) {
    uint64_t seq = LOAD(&slot->seq, RELAXED);
    STORE(&slot->seq, seq + 1, RELAXED);
    __atomic_thread_fence(RELEASE);
    STORE(&slot->guard_low, guard_low, RELAXED);
    STORE(&slot->usable_bottom, usable_bottom, RELAXED);
    STORE(&slot->top, top, RELAXED);
    for (unsigned i = 0; i < LABEL_WORDS; i++) STORE(&slot->label[i], label[i], RELAXED);
    STORE(&slot->seq, seq + 2, RELEASE);
}

/// Whether a writer other than the calling thread is mid-update (readers wait for it; a signal
/// handler interrupting the writer itself must not).
static inline int other_writer_active(void) {
    return LOAD(&writer_active, ACQUIRE) && !pthread_equal(LOAD(&writer_thread, RELAXED), pthread_self());
}

/// Seqlock read of slot `id` into `out`; returns 1 for a consistent copy of a live slot.
static int slot_read(uint32_t id, fs_guard_entry *out) {
    struct slot *slot = slot_at(id);
    if (!slot) return 0;
    for (unsigned attempt = 0; attempt < 1024; attempt++) {
        uint64_t seq = LOAD(&slot->seq, ACQUIRE);
        if (seq & 1) {
            if (!other_writer_active()) return 0;
            if (attempt % 64 == 63) sched_yield();
            continue;
        }
        uint64_t label[LABEL_WORDS];
        out->guard_low = (uintptr_t)LOAD(&slot->guard_low, RELAXED);
        out->usable_bottom = (uintptr_t)LOAD(&slot->usable_bottom, RELAXED);
        out->top = (uintptr_t)LOAD(&slot->top, RELAXED);
        for (unsigned i = 0; i < LABEL_WORDS; i++) label[i] = LOAD(&slot->label[i], RELAXED);
        __atomic_thread_fence(ACQUIRE);
        if (LOAD(&slot->seq, RELAXED) != seq) continue;
        memcpy(out->label, label, sizeof label);
        out->label[FS_GUARD_LABEL_CAPACITY - 1] = 0;
        return out->usable_bottom != 0;
    }
    return 0;
}

// MARK: - The index

/// Looks `key` up in `index`; returns its slot id or NO_SLOT. Safe for readers and writers.
static uint32_t index_lookup(const struct hash_index *index, uint64_t key) {
    uint64_t position = bucket_of(index, key);
    for (uint64_t probes = 0; probes <= index->mask; probes++) {
        uint64_t found = LOAD(&index->buckets[position].key, ACQUIRE);
        if (found == 0) return NO_SLOT;
        if (found == key) return (uint32_t)LOAD(&index->buckets[position].slot, RELAXED);
        position = (position + 1) & index->mask;
    }
    return NO_SLOT;
}

/// Bytes of the buckets of every generation below `bits`: where generation `bits` starts.
static size_t generation_offset(unsigned bits) {
    return (((size_t)1 << bits) - ((size_t)1 << INITIAL_INDEX_BITS)) * sizeof(struct bucket);
}

/// Makes generation `bits` of the index writable and returns it empty, or NULL (errno set).
static struct hash_index *index_make(unsigned bits) {
    if (bits > MAX_INDEX_BITS) { errno = ENOSPC; return NULL; }
    struct bucket *buckets = (struct bucket *)((char *)index_region + generation_offset(bits));
    if (mprotect(buckets, sizeof(struct bucket) << bits, PROT_READ | PROT_WRITE) != 0) return NULL;
    struct hash_index *index = &generations[bits];
    index->mask = (1ull << bits) - 1;
    index->shift = 64 - bits;
    index->buckets = buckets;
    return index;
}

/// Makes chunk `chunk` of the slot region writable (writers only).
static int chunk_make(uint32_t chunk) {
    if (mprotect(&slot_region[chunk * CHUNK_SLOTS], sizeof(struct slot) * CHUNK_SLOTS, PROT_READ | PROT_WRITE) != 0) {
        return errno;
    }
    STORE(&slots_ready, (chunk + 1) * CHUNK_SLOTS, RELEASE);
    return 0;
}

/// Reserves the address space of both regions and makes the first chunk and index writable.
/// Runs when the library is loaded, so the process's map count is settled before anyone measures it.
__attribute__((constructor)) static void reserve_regions(void) {
    size_t slots_size = sizeof(struct slot) * (size_t)FS_GUARD_REGISTRY_MAX_ENTRIES;
    size_t index_size = generation_offset(MAX_INDEX_BITS + 1);
    void *slots = mmap(NULL, slots_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (slots == MAP_FAILED) return;
    void *index = mmap(NULL, index_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (index == MAP_FAILED) {
        munmap(slots, slots_size);
        return;
    }
    // Huge pages for the parts that become writable: at a million stacks a lookup otherwise pays a
    // TLB miss per bucket and per slot. A hint only: where THP is off, nothing changes but speed.
    (void)madvise(slots, slots_size, MADV_HUGEPAGE);
    (void)madvise(index, index_size, MADV_HUGEPAGE);
    slot_region = slots;
    index_region = index;
    struct hash_index *first = index_make(INITIAL_INDEX_BITS);
    if (first == NULL || chunk_make(0) != 0) {
        munmap(slots, slots_size);
        munmap(index, index_size);
        slot_region = NULL;
        index_region = NULL;
        return;
    }
    STORE(&current_index, first, RELEASE);
}

/// The bucket holding `key`, or the empty bucket where it would go (writers only; the index has room).
static struct bucket *index_position(struct hash_index *index, uint64_t key) {
    uint64_t position = bucket_of(index, key);
    for (;;) {
        uint64_t found = LOAD(&index->buckets[position].key, RELAXED);
        if (found == 0 || found == key) return &index->buckets[position];
        position = (position + 1) & index->mask;
    }
}

/// Publishes `key` -> `slot` in an empty bucket: the slot first, so a reader that sees the key sees it.
static void bucket_fill(struct bucket *bucket, uint64_t key, uint32_t slot) {
    STORE(&bucket->slot, (uint64_t)slot, RELAXED);
    STORE(&bucket->key, key, RELEASE);
}

/// Removes `key` (present) by backward shift, leaving no tombstone (writers only, inside index_seq).
static void index_remove(struct hash_index *index, uint64_t key) {
    uint64_t hole = bucket_of(index, key);
    while (LOAD(&index->buckets[hole].key, RELAXED) != key) hole = (hole + 1) & index->mask;
    uint64_t next = hole;
    for (;;) {
        next = (next + 1) & index->mask;
        uint64_t candidate = LOAD(&index->buckets[next].key, RELAXED);
        if (candidate == 0) break;
        uint64_t home = bucket_of(index, candidate);
        // The candidate may fill the hole unless its home lies cyclically in (hole, next].
        int home_between = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (home_between) continue;
        STORE(&index->buckets[hole].slot, LOAD(&index->buckets[next].slot, RELAXED), RELAXED);
        STORE(&index->buckets[hole].key, candidate, RELEASE);
        hole = next;
    }
    STORE(&index->buckets[hole].key, 0, RELEASE);
}

/// Makes room for one more key: grows the index when it would pass 3/4 full (writers only).
static int index_reserve(void) {
    struct hash_index *index = LOAD(&current_index, RELAXED);
    if ((index_used + 1) * 4 <= (index->mask + 1) * 3) return 0;
    struct hash_index *grown = index_make(64 - index->shift + 1);
    if (!grown) return errno == ENOSPC ? ENOSPC : ENOMEM;
    for (uint64_t i = 0; i <= index->mask; i++) {
        uint64_t key = LOAD(&index->buckets[i].key, RELAXED);
        if (key) bucket_fill(index_position(grown, key), key, (uint32_t)LOAD(&index->buckets[i].slot, RELAXED));
    }
    // The old generation stays mapped and readable: readers may still be probing it.
    STORE(&current_index, grown, RELEASE);
    return 0;
}

// MARK: - Writers

static void writer_enter(void) {
    pthread_mutex_lock(&writer_lock);
    STORE(&writer_thread, pthread_self(), RELAXED);
    STORE(&writer_active, 1, RELEASE);
    STORE(&index_seq, LOAD(&index_seq, RELAXED) + 1, RELAXED);
    __atomic_thread_fence(RELEASE);
}

static void writer_leave(void) {
    STORE(&index_seq, LOAD(&index_seq, RELAXED) + 1, RELEASE);
    STORE(&writer_active, 0, RELEASE);
    pthread_mutex_unlock(&writer_lock);
}

/// A free slot id, making the next chunk writable when needed; NO_SLOT with `*error` set on failure.
static uint32_t slot_take(int *error) {
    if (free_head != NO_SLOT) {
        uint32_t id = free_head;
        free_head = slot_region[id].next_free;
        return id;
    }
    if (slots_made >= FS_GUARD_REGISTRY_MAX_ENTRIES) { *error = ENOSPC; return NO_SLOT; }
    if (slots_made == LOAD(&slots_ready, RELAXED) && (*error = chunk_make(slots_made / CHUNK_SLOTS)) != 0) {
        *error = ENOMEM;
        return NO_SLOT;
    }
    return slots_made++;
}

int fs_guard_registry_add(uintptr_t guard_low, uintptr_t usable_bottom, uintptr_t top, const char *label,
                          size_t label_length) {
    uint64_t page = LOAD(&page_size, ACQUIRE);
    if (page == 0) {
        page = (uint64_t)sysconf(_SC_PAGESIZE);
        STORE(&page_size, page, RELEASE);
    }
    if (usable_bottom == 0 || usable_bottom % page != 0 || guard_low > usable_bottom || top <= usable_bottom) {
        return EINVAL;
    }
    uint64_t words[LABEL_WORDS];
    encode_label(label, label_length, words);

    writer_enter();
    int error = 0;
    if (!LOAD(&current_index, RELAXED)) reserve_regions();
    struct hash_index *index = LOAD(&current_index, RELAXED);
    if (!index) {
        error = ENOMEM;
    } else if ((error = index_reserve()) == 0) {
        struct bucket *bucket = index_position(LOAD(&current_index, RELAXED), usable_bottom);
        uint32_t id = LOAD(&bucket->key, RELAXED) == usable_bottom ? (error = EEXIST, NO_SLOT) : slot_take(&error);
        if (id != NO_SLOT) {
            slot_write(&slot_region[id], guard_low, usable_bottom, top, words);
            uint64_t guard = usable_bottom - guard_low;
            if (guard > LOAD(&max_guard, RELAXED)) STORE(&max_guard, guard, RELEASE);
            bucket_fill(bucket, usable_bottom, id);
            index_used++;
            STORE(&live_count, LOAD(&live_count, RELAXED) + 1, RELAXED);
        }
    }
    writer_leave();
    return error;
}

int fs_guard_registry_remove(uintptr_t usable_bottom) {
    static const uint64_t no_label[LABEL_WORDS];
    if (usable_bottom == 0) return ENOENT;
    writer_enter();
    struct hash_index *index = LOAD(&current_index, RELAXED);
    uint32_t id = index ? index_lookup(index, usable_bottom) : NO_SLOT;
    if (id != NO_SLOT) {
        index_remove(index, usable_bottom);
        index_used--;
        struct slot *slot = &slot_region[id];
        slot_write(slot, 0, 0, 0, no_label);
        slot->next_free = free_head;
        free_head = id;
        STORE(&live_count, LOAD(&live_count, RELAXED) - 1, RELAXED);
    }
    writer_leave();
    return id == NO_SLOT ? ENOENT : 0;
}

int fs_guard_registry_set_label(uintptr_t usable_bottom, const char *label, size_t label_length) {
    uint64_t words[LABEL_WORDS];
    encode_label(label, label_length, words);
    writer_enter();
    struct hash_index *index = LOAD(&current_index, RELAXED);
    uint32_t id = index && usable_bottom ? index_lookup(index, usable_bottom) : NO_SLOT;
    if (id != NO_SLOT) {
        struct slot *slot = &slot_region[id];
        slot_write(slot, LOAD(&slot->guard_low, RELAXED), usable_bottom, LOAD(&slot->top, RELAXED), words);
    }
    writer_leave();
    return id == NO_SLOT ? ENOENT : 0;
}

// MARK: - Readers

/// Runs `probe` until it hits, or until a miss is confirmed by an even, unchanged `index_seq`.
/// Gives up waiting for a writer after a bounded number of attempts (and never waits for the calling
/// thread itself, which a signal handler may have interrupted mid-write): then the last answer stands.
#define READ_CONSISTENTLY(hit_expression)                                                   \
    for (unsigned attempt = 0; attempt < 4096; attempt++) {                                 \
        uint64_t before = LOAD(&index_seq, ACQUIRE);                                        \
        if ((before & 1) && other_writer_active() && attempt < 4095) {                      \
            if (attempt % 64 == 63) sched_yield();                                          \
            continue;                                                                       \
        }                                                                                   \
        struct hash_index *index = LOAD(&current_index, ACQUIRE);                           \
        if (!index) return 0;                                                               \
        if (hit_expression) return 1;                                                       \
        __atomic_thread_fence(ACQUIRE);                                                     \
        uint64_t after = LOAD(&index_seq, RELAXED);                                         \
        if (before == after && !(before & 1)) return 0;                                     \
        if ((before & 1) && !other_writer_active()) return 0;                               \
    }                                                                                       \
    return 0;

static int lookup_exact(const struct hash_index *index, uint64_t key, fs_guard_entry *out) {
    uint32_t id = index_lookup(index, key);
    return id != NO_SLOT && slot_read(id, out) && out->usable_bottom == key;
}

int fs_guard_registry_get(uintptr_t usable_bottom, fs_guard_entry *out) {
    if (usable_bottom == 0) return 0;
    READ_CONSISTENTLY(lookup_exact(index, usable_bottom, out))
}

/// Tries every page-aligned usable bottom that a guard holding `address` could end at.
static int lookup_containing(const struct hash_index *index, uint64_t address, fs_guard_entry *out) {
    uint64_t page = LOAD(&page_size, ACQUIRE);
    uint64_t reach = LOAD(&max_guard, ACQUIRE);
    if (page == 0 || reach == 0) return 0;
    for (uint64_t candidate = (address & ~(page - 1)) + page; candidate > address && candidate - address <= reach;
         candidate += page) {
        if (lookup_exact(index, candidate, out) && out->guard_low <= address) return 1;
    }
    return 0;
}

int fs_guard_registry_find(uintptr_t address, fs_guard_entry *out) {
    READ_CONSISTENTLY(lookup_containing(index, address, out))
}

size_t fs_guard_registry_count(void) {
    return (size_t)LOAD(&live_count, RELAXED);
}
