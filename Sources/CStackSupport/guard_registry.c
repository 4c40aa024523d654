// The guard registry: entries in slot segments that grow with use, found through an open-addressed
// hash index keyed by the usable bottom. Design, costs and limits: docs/overflow-detection.md.
//
// Layout:
// - Slots live in segments; segment k is its own mapping of 4096 << k slots (chunks of 4096 slots),
//   so slot ids are dense and segment k starts at id 4096 * (2^k - 1). Segment 0 is mapped when the
//   library loads and stays; others are mapped when every lower slot is taken and unmapped, highest
//   first, when they are empty (but not within 4,096 writes of being mapped: no churn at a boundary).
// - Each segment has a parallel mapping of labels, one per slot, mapped, published, retired and
//   unmapped with it. A label is written only when it or the label it replaces is not empty, so the
//   pages of a segment whose stacks have no labels are never backed: a stack without a label costs
//   its 40-byte slot and its share of the index, nothing more.
// - Writers keep, per chunk, a live count, a free list and a carve mark, and take slots from the
//   lowest chunk with room. A chunk that empties is handed back with MADV_DONTNEED, slots and labels
//   (one empty chunk is kept as a spare, the lowest), so the resident slots follow the live entries.
// - The index is one mapping per generation: a header page (mask and shift, never changed while the
//   mapping exists) and 8-byte buckets. A bucket holds the top 32 bits of its key's hash (its tag,
//   which also gives its home bucket) and its slot id + 1; 0 is empty. A tag that matches is confirmed
//   against the slot's usable bottom, so the index stores no key. It doubles above 3/4 load and is
//   rebuilt at half load at most when it falls to a quarter. The first generation (8,192 buckets) is
//   mapped at load and stays; a retired generation's buckets are zeroed with MADV_DONTNEED at once and
//   unmapped when no reader can hold it. Retired and spare memory therefore reads as zeros: "empty
//   bucket", "free slot".
//
// Concurrency:
// - Writers hold `writer_lock`. Every field a reader can see is written with an atomic store.
// - Each slot is a seqlock (`seq` odd while a writer changes it); a reader copies the slot and keeps
//   the copy only if `seq` was even and unchanged around it. A slot whose page was zeroed restarts at
//   `seq_floor`, above every sequence number written so far, so a reader that sampled the slot before
//   the zeroing can never see the same number again (no ABA across MADV_DONTNEED).
// - The index is linear probing with backward-shift deletion (no tombstones). A deletion moves
//   entries, and a rebuild or a zeroing empties buckets, so a reader probing meanwhile can miss a key
//   that is present: every writer bumps `index_seq` to odd before touching the index, the slots or any
//   mapping and to even after, and a reader that found nothing trusts the miss only if `index_seq` was
//   even and unchanged. A hit needs no such check: it is validated against the slot itself, whose
//   usable bottom must equal the key.
// - Readers never wait for a writer that is their own thread (a signal handler may have interrupted
//   it) and wait a bounded number of attempts for others.
// - Unmapping: readers reach mappings only through `segments[]`, `labels[]` and `current_index`. A
//   reader increments `readers` (sequentially consistent) before it loads any and decrements it when done;
//   a writer unpublishes a mapping (sequentially consistent store), then unmaps it only if `readers`
//   is 0 afterwards. Either the reader's increment comes first in the total order (the writer sees it
//   and keeps the mapping, retrying at a later write) or the unpublishing does (the reader cannot load
//   the pointer). A signal handler interrupting the writer on its own thread finishes its read before
//   the writer goes on, so it too sees either the old published mapping intact or none.
#define _GNU_SOURCE
#include "guard_registry.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK_SHIFT 12u
#define CHUNK_SLOTS (1u << CHUNK_SHIFT)
#define MAX_SEGMENTS 20u  // 4096 * (2^20 - 1) slot ids: all fit below NO_SLOT
#define MAX_CHUNKS ((1u << MAX_SEGMENTS) - 1)
#define NO_SLOT UINT32_MAX
#define NO_CHUNK UINT32_MAX
#define INITIAL_INDEX_BITS 13u
#define MAX_INDEX_BITS 32u  // a home bucket comes from the 32-bit tag
#define LABEL_WORDS (FS_GUARD_LABEL_CAPACITY / 8)

#define LOAD(p, order) __atomic_load_n((p), (order))
#define STORE(p, v, order) __atomic_store_n((p), (v), (order))
#define RELAXED __ATOMIC_RELAXED
#define ACQUIRE __ATOMIC_ACQUIRE
#define RELEASE __ATOMIC_RELEASE
#define SEQ_CST __ATOMIC_SEQ_CST

/// One registered stack. Every field but the writers-only union is read by lock-free readers; its
/// label lives at the same index of the segment's labels, under the same `seq`.
struct slot {
    uint64_t seq;
    uint64_t guard_low;
    uint64_t usable_bottom;  // 0 while the slot is free
    uint64_t top;
    union {  // writers only
        uint32_t next_free;     // a free slot: the chunk's free list
        uint64_t registration;  // a live slot: which registration holds it (see fs_guard_registry_add),
                                // LABELLED set while its label is not empty
    };
};

#define LABELLED (1ull << 63)  // registration ids stay far below

/// The label of one slot: `FS_GUARD_LABEL_CAPACITY` bytes, all zero when it has none.
struct label {
    uint64_t words[LABEL_WORDS];
};

/// One generation of the index, at the start of its own mapping; the header never changes.
struct hash_index {
    uint64_t mask;   // buckets - 1
    unsigned shift;  // 64 - log2(buckets)
    unsigned bits;
    uint64_t *buckets;  // one page after the header: tag << 32 | (slot id + 1), 0 when empty
};

/// Writer bookkeeping of one chunk of slots.
struct chunk_state {
    uint32_t live;
    uint32_t carved;  // slots [0, carved) were handed out since the chunk was last zeroed
    uint32_t free_head;
};

// Shared with readers (atomics only).
static struct slot *segments[MAX_SEGMENTS];
static struct label *labels[MAX_SEGMENTS];  // published before, unpublished after, their segment
static struct hash_index *current_index;
static uint64_t index_seq;
static uint64_t readers;
static uint64_t max_guard;
static uint64_t page_size;
static uint64_t live_count;
static pthread_t writer_thread;
static int writer_active;

// Writers only, under writer_lock.
static pthread_mutex_t writer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct chunk_state *chunk_states[MAX_SEGMENTS];
static uint64_t segment_live[MAX_SEGMENTS];
static uint64_t segment_born[MAX_SEGMENTS];  // `writes` when the segment was mapped
static uint64_t writes;                      // registrations and removals so far
static uint64_t registrations;               // registrations so far: the id of the newest
static unsigned segments_mapped;  // segments [0, segments_mapped) are published
static struct slot *segment_retired[MAX_SEGMENTS];     // unpublished, zeroed, not yet unmapped
static struct label *labels_retired[MAX_SEGMENTS];     // the same for their labels
static struct hash_index *index_maps[MAX_INDEX_BITS + 1];  // every generation still mapped
static uint64_t room[(MAX_CHUNKS + 63) / 64];  // bit per chunk: mapped and not full
static uint32_t room_hint;                     // no chunk below this word has room
static uint32_t spare_chunk = NO_CHUNK;        // the one empty chunk kept resident
static uint64_t index_used;
static uint64_t seq_floor;
static uint64_t last_removed;  // the key removed last (`fs_guard_registry_remove`'s stride guess)
static int retired_pending;  // some retired mapping still waits for readers to leave

// MARK: - Geometry

static inline unsigned segment_of_chunk(uint32_t chunk) { return 31u - (unsigned)__builtin_clz(chunk + 1); }
static inline uint32_t first_chunk(unsigned segment) { return (1u << segment) - 1; }
static inline size_t segment_bytes(unsigned segment) {
    return sizeof(struct slot) * ((size_t)CHUNK_SLOTS << segment);
}
static inline size_t labels_bytes(unsigned segment) {
    return sizeof(struct label) * ((size_t)CHUNK_SLOTS << segment);
}
static inline size_t index_bytes(unsigned bits) {
    return (size_t)LOAD(&page_size, RELAXED) + (sizeof(uint64_t) << bits);
}

static inline uint64_t key_hash(uint64_t key) { return (key >> 12) * 0x9E3779B97F4A7C15ull; }
static inline uint64_t bucket_of(uint64_t shift, uint64_t key) { return key_hash(key) >> shift; }
/// The bucket word for `key` in slot `id`.
static inline uint64_t bucket_word(uint64_t key, uint32_t id) {
    return (key_hash(key) & 0xFFFFFFFF00000000ull) | ((uint64_t)id + 1);
}
static inline uint32_t bucket_slot(uint64_t word) { return (uint32_t)word - 1; }

/// Slot `id` if its segment is published, else NULL. Safe for readers (inside `readers`) and writers.
static inline struct slot *slot_at(uint32_t id) {
    uint32_t chunk = id >> CHUNK_SHIFT;
    if (chunk >= MAX_CHUNKS) return NULL;
    unsigned segment = segment_of_chunk(chunk);
    struct slot *base = LOAD(&segments[segment], ACQUIRE);
    return base ? &base[id - (first_chunk(segment) << CHUNK_SHIFT)] : NULL;
}

/// The label of slot `id` if its segment's labels are published, else NULL. Safe as `slot_at` is.
static inline struct label *label_at(uint32_t id) {
    uint32_t chunk = id >> CHUNK_SHIFT;
    if (chunk >= MAX_CHUNKS) return NULL;
    unsigned segment = segment_of_chunk(chunk);
    struct label *base = LOAD(&labels[segment], ACQUIRE);
    return base ? &base[id - (first_chunk(segment) << CHUNK_SHIFT)] : NULL;
}

static inline struct chunk_state *chunk_state(uint32_t chunk) {
    unsigned segment = segment_of_chunk(chunk);
    return &chunk_states[segment][chunk - first_chunk(segment)];
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

/// Seqlock write of a whole slot and its label (writers only; the segment is published). The label is
/// written only when it or the one it replaces (`had_label`) is not empty (an empty label is all zeros,
/// a non-empty one starts with a non-zero byte), so unlabelled stacks never back a label page.
static void slot_write(uint32_t id, uint64_t guard_low, uint64_t usable_bottom, uint64_t top,
                       const uint64_t label[LABEL_WORDS], int had_label) {
    struct slot *slot = slot_at(id);
    uint64_t *stored = label_at(id)->words;
    uint64_t seq = LOAD(&slot->seq, RELAXED);
    if (seq == 0) seq = seq_floor;  // a zeroed page: restart above every number a reader may hold
    STORE(&slot->seq, seq + 1, RELAXED);
    __atomic_thread_fence(RELEASE);
    STORE(&slot->guard_low, guard_low, RELAXED);
    STORE(&slot->usable_bottom, usable_bottom, RELAXED);
    STORE(&slot->top, top, RELAXED);
    if (label[0] || had_label) {
        for (unsigned i = 0; i < LABEL_WORDS; i++) STORE(&stored[i], label[i], RELAXED);
    }
    STORE(&slot->seq, seq + 2, RELEASE);
    if (seq + 2 > seq_floor) seq_floor = seq + 2;
}

/// Whether a writer other than the calling thread is mid-update (readers wait for it; a signal
/// handler interrupting the writer itself must not).
static inline int other_writer_active(void) {
    return LOAD(&writer_active, ACQUIRE) && !pthread_equal(LOAD(&writer_thread, RELAXED), pthread_self());
}

/// Seqlock read of slot `id` into `out`; returns 1 for a consistent copy of a live slot.
static int slot_read(uint32_t id, fs_guard_entry *out) {
    struct slot *slot = slot_at(id);
    struct label *stored = label_at(id);
    if (!slot || !stored) return 0;
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
        for (unsigned i = 0; i < LABEL_WORDS; i++) label[i] = LOAD(&stored->words[i], RELAXED);
        __atomic_thread_fence(ACQUIRE);
        if (LOAD(&slot->seq, RELAXED) != seq) continue;
        memcpy(out->label, label, sizeof label);
        out->label[FS_GUARD_LABEL_CAPACITY - 1] = 0;
        return out->usable_bottom != 0;
    }
    return 0;
}

// MARK: - Mappings

static void *map_zeroed(size_t bytes) {
    void *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) return NULL;
    // Huge pages where a mapping is large enough: at a million stacks a lookup otherwise pays a TLB
    // miss per bucket and per slot. A hint only: where THP is off, nothing changes but speed.
    if (bytes >= (2u << 20)) (void)madvise(memory, bytes, MADV_HUGEPAGE);
    return memory;
}

/// Hands the pages of `[memory, memory + bytes)` back to the kernel; they read as zeros afterwards.
/// A failure only leaves the memory resident: the contents are cleared either way.
static void release_pages(void *memory, size_t bytes) {
    if (madvise(memory, bytes, MADV_DONTNEED) != 0) memset(memory, 0, bytes);
}

/// Unmaps every retired mapping if no reader is inside the registry (writers only; see the header).
static void unmap_retired(void) {
    if (!retired_pending) return;
    __atomic_thread_fence(SEQ_CST);
    if (LOAD(&readers, SEQ_CST) != 0) return;
    for (unsigned segment = 1; segment < MAX_SEGMENTS; segment++) {
        if (segment_retired[segment]) {
            (void)munmap(segment_retired[segment], segment_bytes(segment));  // fails only for bad arguments
            segment_retired[segment] = NULL;
        }
        if (labels_retired[segment]) {
            (void)munmap(labels_retired[segment], labels_bytes(segment));
            labels_retired[segment] = NULL;
        }
    }
    for (unsigned bits = INITIAL_INDEX_BITS + 1; bits <= MAX_INDEX_BITS; bits++) {
        struct hash_index *index = index_maps[bits];
        if (index && index != LOAD(&current_index, RELAXED)) {
            (void)munmap(index, index_bytes(bits));
            index_maps[bits] = NULL;
        }
    }
    retired_pending = 0;
}

// MARK: - The index

/// Whether `word` (a bucket in use) holds `key`: its tag matches and its slot is `key`'s. Exact for
/// writers; a reader's answer is checked again against the slot it copies.
static inline int bucket_holds(uint64_t word, uint64_t key) {
    if ((word ^ key_hash(key)) >> 32) return 0;
    struct slot *slot = slot_at(bucket_slot(word));
    return slot && LOAD(&slot->usable_bottom, RELAXED) == key;
}

/// The position of `key`'s bucket in `index`, with its word in `*word`, or of the empty bucket where
/// it would go, with `*word` 0 (the load limit keeps one empty). Safe for readers and writers.
static uint64_t index_find(const struct hash_index *index, uint64_t key, uint64_t *word) {
    uint64_t position = bucket_of(index->shift, key);
    for (uint64_t probes = 0; probes <= index->mask; probes++) {
        *word = LOAD(&index->buckets[position], ACQUIRE);
        if (*word == 0 || bucket_holds(*word, key)) return position;
        position = (position + 1) & index->mask;
    }
    *word = 0;  // a reader that raced writers all the way round: a miss, which it checks against index_seq
    return position;
}

/// Looks `key` up in `index`; returns its slot id or NO_SLOT. Safe for readers and writers.
static uint32_t index_lookup(const struct hash_index *index, uint64_t key) {
    uint64_t word;
    (void)index_find(index, key, &word);
    return word ? bucket_slot(word) : NO_SLOT;
}

/// Generation `bits` of the index, empty: its retired mapping (zeroed) or a new one; NULL on failure.
static struct hash_index *index_make(unsigned bits) {
    if (bits > MAX_INDEX_BITS) { errno = ENOSPC; return NULL; }
    if (index_maps[bits]) return index_maps[bits];
    struct hash_index *index = map_zeroed(index_bytes(bits));
    if (!index) return NULL;
    index->mask = (1ull << bits) - 1;
    index->shift = 64 - bits;
    index->bits = bits;
    index->buckets = (uint64_t *)((char *)index + LOAD(&page_size, RELAXED));
    index_maps[bits] = index;
    return index;
}

/// Maps segment `segment` and its labels (or takes back their retired mappings) and publishes them
/// (writers only).
static int segment_make(unsigned segment) {
    if (segment >= MAX_SEGMENTS) return ENOSPC;
    struct chunk_state *states = calloc((size_t)1 << segment, sizeof *states);
    if (!states) return ENOMEM;
    struct slot *slots = segment_retired[segment] ? segment_retired[segment] : map_zeroed(segment_bytes(segment));
    struct label *names = labels_retired[segment] ? labels_retired[segment] : map_zeroed(labels_bytes(segment));
    if (!slots || !names) {
        // Unmaps what this call mapped; a retired mapping stays retired, for the next attempt.
        if (slots && slots != segment_retired[segment]) (void)munmap(slots, segment_bytes(segment));
        if (names && names != labels_retired[segment]) (void)munmap(names, labels_bytes(segment));
        free(states);
        return ENOMEM;
    }
    segment_retired[segment] = NULL;
    labels_retired[segment] = NULL;
    chunk_states[segment] = states;
    uint32_t first = first_chunk(segment);
    for (uint32_t chunk = first; chunk < first + (1u << segment); chunk++) {
        chunk_state(chunk)->free_head = NO_SLOT;
        room[chunk / 64] |= 1ull << (chunk % 64);
    }
    segment_live[segment] = 0;
    segment_born[segment] = writes;
    STORE(&labels[segment], names, RELEASE);
    STORE(&segments[segment], slots, RELEASE);
    segments_mapped = segment + 1;
    return 0;
}

/// The load-time state: segment 0 and the first index generation, so that the process's map count is
/// settled before anyone measures it and no stack ever waits on the first mappings.
__attribute__((constructor)) static void registry_load(void) {
    STORE(&page_size, (uint64_t)sysconf(_SC_PAGESIZE), RELEASE);
    struct hash_index *first = index_make(INITIAL_INDEX_BITS);
    if (!first) return;
    if (segment_make(0) != 0) {
        (void)munmap(first, index_bytes(INITIAL_INDEX_BITS));
        index_maps[INITIAL_INDEX_BITS] = NULL;
        return;
    }
    STORE(&current_index, first, RELEASE);
}

/// Removes the bucket at `hole` (in use) by backward shift, leaving no tombstone (writers only, inside
/// index_seq). A bucket's home is its word shifted as a key's hash is: the tag is the hash's top bits.
static void index_remove(struct hash_index *index, uint64_t hole) {
    uint64_t next = hole;
    for (;;) {
        next = (next + 1) & index->mask;
        uint64_t candidate = LOAD(&index->buckets[next], RELAXED);
        if (candidate == 0) break;
        uint64_t home = candidate >> index->shift;
        // The candidate may fill the hole unless its home lies cyclically in (hole, next].
        int home_between = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (home_between) continue;
        STORE(&index->buckets[hole], candidate, RELEASE);
        hole = next;
    }
    STORE(&index->buckets[hole], 0, RELEASE);
}

/// Moves every bucket into generation `bits`, publishes it and retires the old one (writers only).
static int index_rebuild(unsigned bits) {
    struct hash_index *old = LOAD(&current_index, RELAXED);
    struct hash_index *rebuilt = index_make(bits);
    if (!rebuilt) return errno == ENOSPC ? ENOSPC : ENOMEM;
    for (uint64_t i = 0; i <= old->mask; i++) {
        uint64_t word = LOAD(&old->buckets[i], RELAXED);
        if (!word) continue;
        // Keys are distinct, so each goes to the first empty bucket from its home: no slot is read.
        uint64_t position = word >> rebuilt->shift;
        while (LOAD(&rebuilt->buckets[position], RELAXED)) position = (position + 1) & rebuilt->mask;
        STORE(&rebuilt->buckets[position], word, RELAXED);
    }
    STORE(&current_index, rebuilt, SEQ_CST);
    release_pages(old->buckets, sizeof(uint64_t) << old->bits);
    if (old->bits != INITIAL_INDEX_BITS) retired_pending = 1;
    return 0;
}

/// Makes room for one more key: grows the index when it would pass 3/4 full (writers only).
static int index_reserve(void) {
    struct hash_index *index = LOAD(&current_index, RELAXED);
    if ((index_used + 1) * 4 <= (index->mask + 1) * 3) return 0;
    return index_rebuild(index->bits + 1);
}

/// Rebuilds the index at half load at most when it has fallen to a quarter (writers only), so a count
/// that hovers rebuilds at most once per 2,048 changes. A failure keeps the larger index, which works.
static void index_shrink(void) {
    struct hash_index *index = LOAD(&current_index, RELAXED);
    if (index->bits == INITIAL_INDEX_BITS || index_used * 4 > index->mask + 1) return;
    unsigned bits = INITIAL_INDEX_BITS;
    while ((1ull << bits) < index_used * 2) bits++;
    (void)index_rebuild(bits);
}

// MARK: - Slots

/// A free slot id from the lowest chunk with room, mapping the next segment when none has room;
/// NO_SLOT with `*error` set on failure (writers only).
static uint32_t slot_take(int *error) {
    uint32_t word = room_hint;
    uint32_t words = (first_chunk(segments_mapped) + 63) / 64;
    while (word < words && room[word] == 0) word++;
    room_hint = word;
    if (word == words) {
        if ((*error = segment_make(segments_mapped)) != 0) return NO_SLOT;
        room_hint = first_chunk(segments_mapped - 1) / 64;
        return slot_take(error);
    }
    uint32_t chunk = word * 64 + (uint32_t)__builtin_ctzll(room[word]);
    struct chunk_state *state = chunk_state(chunk);
    uint32_t id;
    if (state->free_head != NO_SLOT) {
        id = state->free_head;
        state->free_head = slot_at(id)->next_free;
    } else {
        id = (chunk << CHUNK_SHIFT) + state->carved++;
    }
    if (++state->live == CHUNK_SLOTS) room[word] &= ~(1ull << (chunk % 64));
    if (chunk == spare_chunk) spare_chunk = NO_CHUNK;
    segment_live[segment_of_chunk(chunk)]++;
    return id;
}

/// Unpublishes the highest segment (empty) and its labels, zeroes them, and unmaps them when no reader
/// can hold them.
static void segment_retire(void) {
    unsigned segment = --segments_mapped;
    struct slot *slots = LOAD(&segments[segment], RELAXED);
    struct label *names = LOAD(&labels[segment], RELAXED);
    STORE(&segments[segment], NULL, SEQ_CST);
    STORE(&labels[segment], NULL, SEQ_CST);
    uint32_t first = first_chunk(segment);
    for (uint32_t chunk = first; chunk < first + (1u << segment); chunk++) room[chunk / 64] &= ~(1ull << (chunk % 64));
    if (spare_chunk != NO_CHUNK && segment_of_chunk(spare_chunk) == segment) spare_chunk = NO_CHUNK;
    free(chunk_states[segment]);
    chunk_states[segment] = NULL;
    release_pages(slots, segment_bytes(segment));
    release_pages(names, labels_bytes(segment));
    segment_retired[segment] = slots;
    labels_retired[segment] = names;
    retired_pending = 1;
}

/// Zeroes an empty chunk's pages, slots and labels, and forgets its free list (writers only).
static void chunk_release(uint32_t chunk) {
    struct chunk_state *state = chunk_state(chunk);
    release_pages(slot_at(chunk << CHUNK_SHIFT), sizeof(struct slot) * CHUNK_SLOTS);
    release_pages(label_at(chunk << CHUNK_SHIFT), sizeof(struct label) * CHUNK_SLOTS);
    state->carved = 0;
    state->free_head = NO_SLOT;
}

/// Returns slot `id` (already written free) to its chunk; hands memory back when chunks empty.
static void slot_give(uint32_t id) {
    uint32_t chunk = id >> CHUNK_SHIFT;
    struct chunk_state *state = chunk_state(chunk);
    slot_at(id)->next_free = state->free_head;
    state->free_head = id;
    if (state->live-- == CHUNK_SLOTS) {
        room[chunk / 64] |= 1ull << (chunk % 64);
        if (chunk / 64 < room_hint) room_hint = chunk / 64;
    }
    unsigned segment = segment_of_chunk(chunk);
    segment_live[segment]--;
    if (state->live == 0) {
        // Keep the lowest empty chunk as a spare, so a count that hovers at a chunk boundary costs
        // no madvise and no page faults; release the other.
        if (spare_chunk == NO_CHUNK) {
            spare_chunk = chunk;
        } else {
            chunk_release(chunk > spare_chunk ? chunk : spare_chunk);
            if (chunk < spare_chunk) spare_chunk = chunk;
        }
    }
    // The highest segment goes once it is empty, unless it was mapped fewer than CHUNK_SLOTS writes ago:
    // a count that hovers at a segment boundary maps and unmaps at most once per 4,096 changes.
    while (segments_mapped > 1 && segment_live[segments_mapped - 1] == 0 &&
           writes - segment_born[segments_mapped - 1] >= CHUNK_SLOTS) {
        segment_retire();
    }
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
    unmap_retired();
    STORE(&index_seq, LOAD(&index_seq, RELAXED) + 1, RELEASE);
    STORE(&writer_active, 0, RELEASE);
    pthread_mutex_unlock(&writer_lock);
}

int fs_guard_registry_add(uintptr_t guard_low, uintptr_t usable_bottom, uintptr_t top, const char *label,
                          size_t label_length, uint64_t *registration) {
    uint64_t page = LOAD(&page_size, ACQUIRE);
    if (usable_bottom == 0 || page == 0 || usable_bottom % page != 0 || guard_low > usable_bottom ||
        top <= usable_bottom) {
        return EINVAL;
    }
    uint64_t words[LABEL_WORDS];
    encode_label(label, label_length, words);

    writer_enter();
    writes++;
    int error = 0;
    if (!LOAD(&current_index, RELAXED)) registry_load();
    if (!LOAD(&current_index, RELAXED)) {
        error = ENOMEM;
    } else if ((error = index_reserve()) == 0) {
        struct hash_index *index = LOAD(&current_index, RELAXED);
        uint64_t word;
        uint64_t position = index_find(index, usable_bottom, &word);
        int replaces = word != 0;
        uint32_t id = replaces ? bucket_slot(word) : slot_take(&error);
        if (id != NO_SLOT) {
            struct slot *slot = slot_at(id);
            // A slot just taken is free and its label cleared; one replaced in place may hold a label.
            slot_write(id, guard_low, usable_bottom, top, words, replaces && (slot->registration & LABELLED));
            slot->registration = ++registrations | (words[0] ? LABELLED : 0);
            if (registration) *registration = registrations;
            uint64_t guard = usable_bottom - guard_low;
            if (guard > LOAD(&max_guard, RELAXED)) STORE(&max_guard, guard, RELEASE);
            if (!replaces) {
                // After the slot: a reader that sees the bucket sees the slot it names.
                STORE(&index->buckets[position], bucket_word(usable_bottom, id), RELEASE);
                index_used++;
                STORE(&live_count, LOAD(&live_count, RELAXED) + 1, RELAXED);
            }
        }
    }
    writer_leave();
    return error;
}

int fs_guard_registry_remove(uintptr_t usable_bottom, uint64_t registration) {
    static const uint64_t no_label[LABEL_WORDS];
    if (usable_bottom == 0) return ENOENT;
    writer_enter();
    writes++;
    struct hash_index *index = LOAD(&current_index, RELAXED);
    // Stacks are often released in the order they were made (a slab or pool trimmed, a scheduler shut
    // down): the next key is then this one plus the same stride. Its bucket, a cache miss otherwise, is
    // fetched while this removal and the stack's release go on; a wrong guess costs one prefetch.
    if (index && last_removed) __builtin_prefetch(&index->buckets[bucket_of(index->shift, 2 * usable_bottom - last_removed)], 0, 3);
    last_removed = usable_bottom;
    uint64_t word = 0;
    uint64_t position = index ? index_find(index, usable_bottom, &word) : 0;
    uint32_t id = word ? bucket_slot(word) : NO_SLOT;
    if (id != NO_SLOT && registration && (slot_at(id)->registration & ~LABELLED) != registration) id = NO_SLOT;
    if (id != NO_SLOT) {
        index_remove(index, position);
        index_used--;
        slot_write(id, 0, 0, 0, no_label, (slot_at(id)->registration & LABELLED) != 0);
        STORE(&live_count, LOAD(&live_count, RELAXED) - 1, RELAXED);
        slot_give(id);
        index_shrink();
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
        struct slot *slot = slot_at(id);
        slot_write(id, LOAD(&slot->guard_low, RELAXED), usable_bottom, LOAD(&slot->top, RELAXED), words,
                   (slot->registration & LABELLED) != 0);
        slot->registration = (slot->registration & ~LABELLED) | (words[0] ? LABELLED : 0);
    }
    writer_leave();
    return id == NO_SLOT ? ENOENT : 0;
}

void fs_guard_registry_prefetch(const uintptr_t *usable_bottoms, size_t count) {
    // Under the writers' lock, which no reader waits for: the index cannot be retired meanwhile.
    pthread_mutex_lock(&writer_lock);
    const struct hash_index *index = LOAD(&current_index, RELAXED);
    for (size_t i = 0; index && i < count; i++) {
        // For reading: prefetching for writing measured slower afterwards (a million suspended fibers
        // took 0.01-0.1 s longer to resume), and the registration writes the line soon anyway.
        __builtin_prefetch(&index->buckets[bucket_of(index->shift, usable_bottoms[i])], 0, 3);
    }
    pthread_mutex_unlock(&writer_lock);
}

// MARK: - Readers

/// Runs `probe` until it hits, or until a miss is confirmed by an even, unchanged `index_seq`.
/// Gives up waiting for a writer after a bounded number of attempts (and never waits for the calling
/// thread itself, which a signal handler may have interrupted mid-write): then the last answer stands.
static int read_consistently(int (*probe)(const struct hash_index *, uint64_t, fs_guard_entry *), uint64_t key,
                             fs_guard_entry *out) {
    for (unsigned attempt = 0; attempt < 4096; attempt++) {
        uint64_t before = LOAD(&index_seq, ACQUIRE);
        if ((before & 1) && other_writer_active() && attempt < 4095) {
            if (attempt % 64 == 63) sched_yield();
            continue;
        }
        struct hash_index *index = LOAD(&current_index, ACQUIRE);
        if (!index) return 0;
        if (probe(index, key, out)) return 1;
        __atomic_thread_fence(ACQUIRE);
        uint64_t after = LOAD(&index_seq, RELAXED);
        if (before == after && !(before & 1)) return 0;
        if ((before & 1) && !other_writer_active()) return 0;
    }
    return 0;
}

/// `read_consistently` inside the `readers` count, so no writer unmaps what it reads.
static int read_registered(int (*probe)(const struct hash_index *, uint64_t, fs_guard_entry *), uint64_t key,
                           fs_guard_entry *out) {
    __atomic_fetch_add(&readers, 1, SEQ_CST);
    __atomic_thread_fence(SEQ_CST);
    int found = read_consistently(probe, key, out);
    __atomic_fetch_sub(&readers, 1, RELEASE);
    return found;
}

static int lookup_exact(const struct hash_index *index, uint64_t key, fs_guard_entry *out) {
    uint32_t id = index_lookup(index, key);
    return id != NO_SLOT && slot_read(id, out) && out->usable_bottom == key;
}

int fs_guard_registry_get(uintptr_t usable_bottom, fs_guard_entry *out) {
    if (usable_bottom == 0) return 0;
    return read_registered(lookup_exact, usable_bottom, out);
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
    return read_registered(lookup_containing, address, out);
}

size_t fs_guard_registry_count(void) {
    return (size_t)LOAD(&live_count, RELAXED);
}
