/// Keeps an allocator that splits mappings (mprotect guards) below `vm.max_map_count`, with a reserve
/// left to the rest of the process, without reading /proc/self/maps on every stack.
///
/// The budget tracks an estimate of the process's map count: exact when `refresh()` reads it, then raised
/// by what the allocator itself adds. Only when the estimate would cross `limit - reserveInUse` is the real
/// count read again (other code may have unmapped since); if it still would, `charge` throws
/// `.resourceExhausted` before any syscall could fail with ENOMEM.
/// Not thread-safe: the owning allocator calls it under its own lock.
package struct MapCountBudget: Sendable, Hashable {
    /// Mappings an mprotect guard adds in the worst case: the guard splits one writable mapping in three.
    package static let linesPerGuard = 2
    /// The reserve in use is at most the limit divided by this: a reserve meant for the default limit
    /// (65,530) must not leave no room at all under a low one.
    package static let reserveLimitDivisor = 4

    /// Mappings asked to be left to the rest of the process (thread stacks, malloc arenas, libraries).
    package let reserve: Int
    /// `vm.max_map_count`, as last read.
    package private(set) var limit: Int
    /// The process's map count: exact at the last `refresh()`, plus what was charged since.
    package private(set) var estimate: Int
    /// A limit used instead of `vm.max_map_count`, so tests can act out a low limit.
    private let limitOverride: Int?

    /// The reserve kept now: `reserve`, but at most a quarter of the limit.
    package var reserveInUse: Int { Swift.min(reserve, limit / Self.reserveLimitDivisor) }

    /// Guards of `linesPerGuard` mappings that fit below the reserve, as of the estimate.
    package var guardsRemaining: Int { Swift.max(0, (limit - reserveInUse - estimate) / Self.linesPerGuard) }

    /// Reads the limit and the current count now.
    package init(reserve: Int) throws(StackError) {
        try self.init(reserve: reserve, limitOverride: nil)
    }

    /// A budget that takes `limitOverride` (when not nil) as the limit instead of reading `vm.max_map_count`.
    package init(reserve: Int, limitOverride: Int?) throws(StackError) {
        guard reserve >= 0 else {
            throw .invalidConfiguration(
                type: "MapCountBudget", field: "reserve", value: "\(reserve)", allowed: "zero or positive")
        }
        self.reserve = reserve
        self.limitOverride = limitOverride
        limit = 0
        estimate = 0
        try refresh()
    }

    /// Reads `vm.max_map_count` and /proc/self/maps again (O(mappings): call it rarely, once per region).
    package mutating func refresh() throws(StackError) {
        if let limitOverride { limit = limitOverride } else { limit = try MapCount.limit() }
        estimate = try MapCount.current()
    }

    /// Accounts for `lines` new mappings, or throws `.resourceExhausted` when they would eat into the
    /// reserve in use. `stacksRemaining` in the error counts the guards of `linesPerGuard` mappings that
    /// fit in that reserve: what this budget would still allow with a reserve of 0.
    package mutating func charge(_ lines: Int) throws(StackError) {
        if estimate + lines > limit - reserveInUse {
            try refresh()
            guard estimate + lines <= limit - reserveInUse else {
                throw .mapCountReserveReached(
                    limit: limit, current: estimate, reserve: reserveInUse,
                    stacksRemaining: Swift.max(0, (limit - estimate) / Self.linesPerGuard))
            }
        }
        estimate += lines
    }
}
