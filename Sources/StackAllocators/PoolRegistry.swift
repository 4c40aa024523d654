import CStackSupport
import Glibc
import SystemPackage

/// The process-wide bookkeeping behind the pools' thread caches: a per-thread `PoolThreadTable` (read
/// through the `fs_pool_thread_table` thread-local variable on the hot path, and stored under one pthread
/// key for all pools so its destructor frees it at thread exit; creating and destroying pools never
/// exhausts PTHREAD_KEYS_MAX), and a table of live pools by index.
///
/// Lifetimes: a thread's caches are freed when the thread exits (the key's destructor), after handing
/// their stacks to their pools if those are alive. A pool's deinit takes the stacks out of every cache
/// registered to it; the cache memory itself stays with its thread until the thread exits or reuses the
/// index for another pool. Thread exit and pool deinit serialize on the registry lock. Lock order: the
/// registry lock, then a pool's depot lock; never the reverse.
enum PoolRegistry {
    /// One pool's registration.
    struct Entry {
        /// The pool's id (never reused: a stale cache of a dead pool at the same index does not match).
        let id: UInt64
        /// The pool, unretained: it unregisters in its deinit, under the lock.
        var pool: Unmanaged<PoolCore>?
        /// Caches threads made for the pool.
        var caches: [PoolThreadCacheReference] = []
    }

    /// What the lock protects.
    struct State: ~Copyable {
        var entries: [Entry?] = []
        var vacant: [Int] = []
        var nextID: UInt64 = 1
    }

    /// The pthread key whose value is the calling thread's `PoolThreadTable`; the errno if the process ran
    /// out of keys.
    static let key: Result<pthread_key_t, Errno> = {
        var key = pthread_key_t()
        let code = pthread_key_create(&key) { raw in
            if let raw { PoolRegistry.threadExited(raw.assumingMemoryBound(to: PoolThreadTable.self)) }
        }
        return code == 0 ? .success(key) : .failure(Errno(rawValue: code))
    }()

    /// The registry; see the type's documentation for the lock order.
    static let state = Lock(State())

    /// Reserves an index and an id for a new pool.
    static func register() -> (index: Int, id: UInt64) {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            if let index = state.vacant.popLast() {
                state.entries[index] = Entry(id: id)
                return (index, id)
            }
            state.entries.append(Entry(id: id))
            return (state.entries.count - 1, id)
        }
    }

    /// The calling thread's table, if it has one.
    @inline(__always)
    static var currentTable: UnsafeMutablePointer<PoolThreadTable>? {
        fs_get_pool_thread_table()?.assumingMemoryBound(to: PoolThreadTable.self)
    }

    /// The calling thread's table, made on first use; nil when it could not be stored under the key
    /// (ENOMEM), and then the thread works without caches.
    private static func makeTable(key: pthread_key_t) -> UnsafeMutablePointer<PoolThreadTable>? {
        if let table = currentTable { return table }
        let table = UnsafeMutablePointer<PoolThreadTable>.allocate(capacity: 1)
        table.initialize(to: PoolThreadTable(capacity: 0, caches: .allocate(capacity: 0)))
        guard pthread_setspecific(key, table) == 0 else {
            table.pointee.caches.deallocate()
            table.deallocate()
            return nil
        }
        fs_set_pool_thread_table(table)
        return table
    }

    /// Makes the calling thread's cache for the pool at `index` (freeing a stale one of a dead pool at the
    /// same index) and registers it; nil when the thread's table could not be stored.
    static func makeCache(
        key: pthread_key_t, index: Int, poolID: UInt64, capacity: Int
    ) -> UnsafeMutablePointer<PoolThreadCache>? {
        guard let table = makeTable(key: key) else { return nil }
        if index >= table.pointee.capacity {
            let grown = Swift.max(index + 1, table.pointee.capacity * 2, 4)
            let caches = UnsafeMutablePointer<UnsafeMutablePointer<PoolThreadCache>?>.allocate(capacity: grown)
            caches.moveInitialize(from: table.pointee.caches, count: table.pointee.capacity)
            (caches + table.pointee.capacity).initialize(repeating: nil, count: grown - table.pointee.capacity)
            table.pointee.caches.deallocate()
            table.pointee.caches = caches
            table.pointee.capacity = grown
        }
        if let stale = table.pointee.caches[index] {
            // A pool's index is reused only after the previous pool's deinit emptied and unregistered this.
            free(stale)
        }
        // Lines of its own: another thread's cache never shares one with it.
        let cache = UnsafeMutableRawPointer.allocate(
            byteCount: (MemoryLayout<PoolThreadCache>.stride + 127) & ~127, alignment: 128
        ).bindMemory(to: PoolThreadCache.self, capacity: 1)
        cache.initialize(to: PoolThreadCache(poolID: poolID, capacity: capacity))
        table.pointee.caches[index] = cache
        state.withLock { state in
            state.entries[index]?.caches.append(PoolThreadCacheReference(cache: cache))
        }
        return cache
    }

    /// The key's destructor: hands each cache's stacks to its pool if the pool lives, then frees it all.
    static func threadExited(_ table: UnsafeMutablePointer<PoolThreadTable>) {
        fs_set_pool_thread_table(nil)
        state.withLock { state in
            for index in 0..<table.pointee.capacity {
                guard let cache = table.pointee.caches[index] else { continue }
                if index < state.entries.count, let entry = state.entries[index], entry.id == cache.pointee.poolID {
                    entry.pool?._withUnsafeGuaranteedRef { $0.absorb(exitingCache: cache) }
                    state.entries[index]!.caches.removeAll { $0.cache == cache }
                }
                free(cache)
            }
        }
        table.pointee.caches.deallocate()
        table.deallocate()
    }

    /// Unregisters the pool at `index`, giving `drain` every cache registered to it (under the lock).
    static func unregister(index: Int, drain: (UnsafeMutablePointer<PoolThreadCache>) -> Void) {
        state.withLock { state in
            for reference in state.entries[index]!.caches { drain(reference.cache) }
            state.entries[index] = nil
            state.vacant.append(index)
        }
    }

    /// Runs `body` on every cache registered to the pool at `index`, under the lock (for statistics).
    static func forEachCache(index: Int, _ body: (UnsafeMutablePointer<PoolThreadCache>) -> Void) {
        state.withLock { state in
            for reference in state.entries[index]?.caches ?? [] { body(reference.cache) }
        }
    }

    /// Records the pool object for its index once it is fully initialized.
    static func attach(_ pool: PoolCore, index: Int) {
        state.withLock { state in
            state.entries[index]!.pool = Unmanaged.passUnretained(pool)
        }
    }

    private static func free(_ cache: UnsafeMutablePointer<PoolThreadCache>) {
        cache.deinitialize(count: 1)
        cache.deallocate()
    }
}
