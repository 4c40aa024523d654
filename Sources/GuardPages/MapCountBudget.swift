/// Keeps an allocator that splits mappings (mprotect guards) below `vm.max_map_count`, with a reserve
/// left to the rest of the process, without reading /proc/self/maps on every stack.
///
/// The budget tracks an estimate of the process's map count: exact when `refresh()` reads it, then raised
/// by what the allocator itself adds. Only when the estimate would cross `limit - reserve` is the real
/// count read again (other code may have unmapped since); if it still would, `charge` throws
/// `.mapCountReserveReached` before any syscall could fail with ENOMEM.
/// Not thread-safe: the owning allocator calls it under its own lock.
public struct MapCountBudget: Sendable, Hashable {
    /// Mappings an mprotect guard adds in the worst case: the guard splits one writable mapping in three.
    public static let linesPerGuard = 2

    /// Mappings left to the rest of the process (thread stacks, malloc arenas, libraries).
    public let reserve: Int
    /// `vm.max_map_count`, as last read.
    public private(set) var limit: Int
    /// The process's map count: exact at the last `refresh()`, plus what was charged since.
    public private(set) var estimate: Int

    /// Reads the limit and the current count now.
    public init(reserve: Int) throws(StackError) {
        guard reserve >= 0 else {
            throw .invalidSize(requested: reserve, reason: "the map count reserve must not be negative")
        }
        self.reserve = reserve
        limit = try MapCount.limit()
        estimate = try MapCount.current()
    }

    /// Reads `vm.max_map_count` and /proc/self/maps again (O(mappings): call it rarely, once per region).
    public mutating func refresh() throws(StackError) {
        limit = try MapCount.limit()
        estimate = try MapCount.current()
    }

    /// Accounts for `lines` new mappings, or throws `.mapCountReserveReached` when they would eat into the
    /// reserve. `stacksRemaining` in the error counts guards of `linesPerGuard` that fit below the limit.
    public mutating func charge(_ lines: Int) throws(StackError) {
        if estimate + lines > limit - reserve {
            try refresh()
            guard estimate + lines <= limit - reserve else {
                throw .mapCountReserveReached(
                    limit: limit, current: estimate, reserve: reserve,
                    stacksRemaining: Swift.max(0, (limit - estimate) / Self.linesPerGuard))
            }
        }
        estimate += lines
    }
}
