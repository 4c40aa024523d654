@_spi(Benchmarks) import OverflowDetection
/// Overflow detection for one stack: its label in the guard registry, its canary, its high-water mark.
extension Stack {
    /// Names the fiber this stack runs, for the overflow diagnostic (the scheduler uses `"fiber 17 on worker 1 (cpu 1, node 0)"`). Returns
    /// false when the stack is not in the guard registry (an unguarded stack, or an allocator that does
    /// not register its stacks).
    @discardableResult
    public func setOverflowLabel(_ label: String) -> Bool {
        GuardRegistry.setLabel(label, forStackAt: descriptor.layout.usableBottom)
    }

    /// The label set by `setOverflowLabel`, or nil when the stack is not registered.
    package var overflowLabel: String? {
        GuardRegistry.entry(forStackAt: descriptor.layout.usableBottom)?.label
    }

    /// Throws `.canaryCorrupted` when this stack's guard is a canary and it was overwritten; does
    /// nothing for stacks with another guard mechanism.
    public func checkCanary() throws(StackError) {
        guard guardMechanism == .canary else { return }
        try Canary.check(descriptor.layout)
    }

    /// Bytes of this stack used so far, from the top (see `HighWaterMark`).
    public func highWaterMark(by method: HighWaterMark.Method) throws(StackError) -> Int {
        try HighWaterMark.measure(descriptor.layout, by: method)
    }
}
