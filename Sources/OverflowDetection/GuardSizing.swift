import GuardPages
/// The rule that makes a guard trap: it must be at least as large as the largest frame of the code that
/// runs on the stack.
///
/// Swift emits no stack probes, so a function whose frame is larger than the guard moves the stack
/// pointer past the guard without touching it and writes into whatever lies below, usually another
/// fiber's stack. The rule is checked against the code loaded in the process, audited once per process on
/// first use (docs/sizing-stacks.md). Only the result is kept: the audit itself holds every function of
/// every object, megabytes that a process under a tight `ulimit -v` cannot spare.
public enum GuardSizing {
    /// The largest fixed frame of the code loaded in the process, and the guard that covers it.
    package struct Requirement: Sendable, Hashable {
        /// The function with the largest fixed frame, demangled.
        package let function: String
        /// The object that holds it.
        package let object: String
        /// Its frame.
        package let frameBytes: Int
        /// The smallest guard that covers it, rounded up to the system page size.
        package let guardSize: Int

        /// The error for a guard of `guardSize` bytes, when it is smaller than the frame (nil otherwise).
        package func violation(guardSize: Int) -> StackError? {
            guard guardSize < frameBytes else { return nil }
            return .guardSmallerThanFrame(
                guardSize: guardSize, function: function, object: object, frameBytes: frameBytes, needed: self.guardSize)
        }
    }

    /// What the code loaded in the process requires; nil when it has no call frame information at all.
    /// Throws when the process's own objects cannot be audited.
    package static func requirement() throws(StackError) -> Requirement? {
        try cachedRequirement.get()
    }

    private static let cachedRequirement = Result { () throws(StackError) -> Requirement? in
        guard let frame = try FrameAudit.auditLoadedObjects().largestFixedFrame else { return nil }
        let page = systemPageSize
        return Requirement(
            function: frame.name, object: frame.object, frameBytes: frame.frameBytes,
            guardSize: (frame.frameBytes + page - 1) / page * page)
    }

    /// Throws `.guardSmallerThanFrame`, naming the function, its frame, its object and the guard needed,
    /// when `guardSize` bytes are smaller than the largest fixed frame of the code loaded in the process.
    public static func check(guardSize: Int) throws(StackError) {
        if let violation = try requirement()?.violation(guardSize: guardSize) { throw violation }
    }
}
