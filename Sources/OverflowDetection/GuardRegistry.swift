import CStackSupport
import GuardPages
import SystemPackage

/// The process-wide registry of stack guard ranges that the overflow handler reads.
///
/// Allocators register each guarded stack when they create it and unregister it before they unmap
/// it; the scheduler labels it with the fiber it runs. When a fault lands in a registered guard,
/// `OverflowHandler` names that stack. Stacks are keyed by their usable bottom.
///
/// Writers serialize on a mutex (25–35 ns per register or unregister while the registry fits in
/// cache; measured in docs/overflow-detection.md); lookups never lock and are async-signal-safe. Lookup
/// by fault address costs one hash probe per system page of the largest guard ever registered, whatever
/// the number of stacks. The registry grows with the stacks registered and hands its memory back as
/// they go, so it holds as many stacks as memory allows. A stack registered with an empty guard keeps
/// its label (for `entry(forStackAt:)` and canary errors) and never matches a fault.
public enum GuardRegistry {
    /// Longest label kept, in UTF-8 bytes; longer labels are cut on a character boundary.
    @_spi(Benchmarks) public static let labelCapacity = Int(FS_GUARD_LABEL_CAPACITY) - 1

    /// What the registry holds for one stack.
    public struct Entry: Sendable, Hashable {
        /// The guard range (empty for a label-only entry).
        public let guardRange: Range<UInt>
        /// The usable range.
        public let usableRange: Range<UInt>
        /// The label; control characters and `"` are stored as `?`.
        public let label: String

        init(_ entry: fs_guard_entry) {
            guardRange = UInt(entry.guard_low)..<UInt(entry.usable_bottom)
            usableRange = UInt(entry.usable_bottom)..<UInt(entry.top)
            label = withUnsafeBytes(of: entry.label) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
    }

    /// Registers the stack at `layout` with an optional label. Throws `.guardRegistrationFailed` when a
    /// stack with the same usable bottom is still registered (EEXIST), or the registry cannot map its
    /// next segment (ENOMEM).
    @_spi(Benchmarks) public static func register(_ layout: StackLayout, label: String = "") throws(StackError) {
        if let injected = FailureInjection.injected(.register) { throw .guardRegistrationFailed(injected, stack: layout) }
        var label = label
        let code = label.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) {
                fs_guard_registry_add(layout.base, layout.usableBottom, layout.top, $0.baseAddress, $0.count)
            }
        }
        if code != 0 { throw .guardRegistrationFailed(Errno(rawValue: code), stack: layout) }
    }

    /// Removes the stack at `layout`; returns false when it was not registered.
    @discardableResult
    @_spi(Benchmarks) public static func unregister(_ layout: StackLayout) -> Bool {
        fs_guard_registry_remove(layout.usableBottom) == 0
    }

    /// Sets the label of the registered stack whose usable range starts at `usableBottom` (the
    /// scheduler uses the fiber's name or id and its worker: `"job-17@worker-1"`). Returns false when
    /// no such stack is registered.
    @discardableResult
    @_spi(Benchmarks) public static func setLabel(_ label: String, forStackAt usableBottom: UInt) -> Bool {
        var label = label
        return label.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) {
                fs_guard_registry_set_label(usableBottom, $0.baseAddress, $0.count)
            }
        } == 0
    }

    /// The registered stack whose usable range starts at `usableBottom`.
    public static func entry(forStackAt usableBottom: UInt) -> Entry? {
        var entry = fs_guard_entry()
        return fs_guard_registry_get(usableBottom, &entry) == 1 ? Entry(entry) : nil
    }

    /// The registered stack whose guard range contains `address`: the question the handler asks.
    public static func entry(guarding address: UInt) -> Entry? {
        var entry = fs_guard_entry()
        return fs_guard_registry_find(address, &entry) == 1 ? Entry(entry) : nil
    }

    /// Stacks registered now.
    @_spi(Benchmarks) public static var count: Int { fs_guard_registry_count() }
}
