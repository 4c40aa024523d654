import CStackSupport
import GuardPages
import SystemPackage

/// The process-wide registry of stack guard ranges that the overflow handler reads.
///
/// A guarded `Stack` holds its registration and ends it when it goes back to its allocator, before the
/// memory is unmapped; the scheduler labels it with the fiber it runs. When a fault lands in a registered
/// guard, `OverflowHandler` names that stack. Stacks are keyed by their usable bottom.
///
/// Writers serialize on a mutex (25–35 ns per register or unregister while the registry fits in
/// cache; measured in docs/overflow-detection.md); lookups never lock and are async-signal-safe. Lookup
/// by fault address costs one hash probe per system page of the largest guard ever registered, whatever
/// the number of stacks. The registry grows with the stacks registered and hands its memory back as
/// they go, so it holds as many stacks as memory allows. A stack registered with an empty guard keeps
/// its label (for `entry(forStackAt:)` and canary errors) and never matches a fault.
@_spi(Benchmarks) public enum GuardRegistry {
    /// Longest label kept, in UTF-8 bytes; longer labels are cut on a character boundary.
    @_spi(Benchmarks) public static let labelCapacity = Int(FS_GUARD_LABEL_CAPACITY) - 1

    /// What the registry holds for one stack.
    @_spi(Benchmarks) public struct Entry: Sendable, Hashable {
        /// The guard range (empty for a label-only entry).
        @_spi(Benchmarks) public let guardRange: Range<UInt>
        /// The usable range.
        @_spi(Benchmarks) public let usableRange: Range<UInt>
        /// The label; control characters and `"` are stored as `?`.
        @_spi(Benchmarks) public let label: String

        init(_ entry: fs_guard_entry) {
            guardRange = UInt(entry.guard_low)..<UInt(entry.usable_bottom)
            usableRange = UInt(entry.usable_bottom)..<UInt(entry.top)
            label = withUnsafeBytes(of: entry.label) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
    }

    /// Registers the stack at `layout` with an optional label, replacing a stack registered at the same
    /// usable bottom (its memory was unmapped, so the newer stack describes what is there). Returns the
    /// registration's id (never 0), which `end(_:at:)` takes. Throws `.systemCallFailed` when the
    /// registry cannot map its next segment (ENOMEM) or is full (ENOSPC).
    @discardableResult
    @_spi(Benchmarks) public static func register(_ layout: StackLayout, label: String = "") throws(StackError) -> UInt64 {
        if let injected = FailureInjection.injected(.register) { throw .guardRegistrationFailed(injected, stack: layout) }
        var label = label
        var registration: UInt64 = 0
        let code = label.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) {
                fs_guard_registry_add(layout.base, layout.usableBottom, layout.top, $0.baseAddress, $0.count, &registration)
            }
        }
        if code != 0 { throw .guardRegistrationFailed(Errno(rawValue: code), stack: layout) }
        return registration
    }

    /// Ends `registration` of the stack at `usableBottom`, unless a newer registration replaced it there.
    /// Returns false when it was replaced or ended already.
    @discardableResult
    @_spi(Benchmarks) public static func end(_ registration: UInt64, at usableBottom: UInt) -> Bool {
        fs_guard_registry_remove(usableBottom, registration) == 0
    }

    /// Brings into the cache where stacks at `usableBottoms` would be registered: for an allocator that
    /// carved several stacks at once and hands them out next. Changes nothing.
    package static func prefetch(usableBottoms: [UInt]) {
        usableBottoms.withUnsafeBufferPointer { fs_guard_registry_prefetch($0.baseAddress, $0.count) }
    }

    /// Removes whichever stack is registered at `layout`; returns false when none is.
    @discardableResult
    @_spi(Benchmarks) public static func unregister(_ layout: StackLayout) -> Bool {
        fs_guard_registry_remove(layout.usableBottom, 0) == 0
    }

    /// Sets the label of the registered stack whose usable range starts at `usableBottom` (the
    /// scheduler writes `"fiber 17 on worker 1 (cpu 1, node 0)"`). Returns false when
    /// no such stack is registered.
    @discardableResult
    @_spi(Benchmarks) public static func setLabel(_ label: String, forStackAt usableBottom: UInt) -> Bool {
        var label = label
        return label.withUTF8 { setLabel(utf8: $0, forStackAt: usableBottom) }
    }

    /// `setLabel(_:forStackAt:)` from UTF-8 bytes.
    @discardableResult
    package static func setLabel(utf8 label: UnsafeBufferPointer<UInt8>, forStackAt usableBottom: UInt) -> Bool {
        label.withMemoryRebound(to: CChar.self) {
            fs_guard_registry_set_label(usableBottom, $0.baseAddress, $0.count)
        } == 0
    }

    /// The registered stack whose usable range starts at `usableBottom`.
    @_spi(Benchmarks) public static func entry(forStackAt usableBottom: UInt) -> Entry? {
        var entry = fs_guard_entry()
        return fs_guard_registry_get(usableBottom, &entry) == 1 ? Entry(entry) : nil
    }

    /// The registered stack whose guard range contains `address`: the question the handler asks.
    @_spi(Benchmarks) public static func entry(guarding address: UInt) -> Entry? {
        var entry = fs_guard_entry()
        return fs_guard_registry_find(address, &entry) == 1 ? Entry(entry) : nil
    }

    /// Stacks registered now.
    @_spi(Benchmarks) public static var count: Int { fs_guard_registry_count() }
}
