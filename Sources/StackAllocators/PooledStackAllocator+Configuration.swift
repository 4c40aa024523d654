extension PooledStackAllocator {
    /// How much of an idle pooled stack stays resident, and when the rest goes back to the OS.
    public struct HotWatermark: Sendable, Hashable {
        /// When the pages below the watermark are discarded.
        public enum Timing: String, Sendable, Hashable, CaseIterable, Codable {
            /// On every release, in the release path: an idle stack never holds more than `bytes`, at the
            /// price of an madvise per release and page faults when the next owner goes deeper.
            case everyRelease
            /// When a stack leaves a thread's cache for the shared depot (cache overflow, decay, `trim()`,
            /// thread exit): stacks reused at once by the same thread keep their pages, idle ones do not.
            case whenDeposited
        }

        /// Bytes at the top of the stack that stay resident (rounded up to the stack's page size).
        public var bytes: Int
        /// When the rest is discarded.
        public var timing: Timing

        /// Keep the top `bytes` resident; discard the rest `timing`.
        public init(bytes: Int, timing: Timing = .whenDeposited) {
            self.bytes = bytes
            self.timing = timing
        }
    }

    /// The shape and policy of a pool.
    public struct Configuration: Sendable, Hashable {
        /// The stacks the pool holds: usable size, guard and page kind. Requests up to this size are
        /// served with it. Its `prefault` applies to the stacks made for the floor at init.
        public var stack: StackRequest
        /// The floor: stacks made at init and never trimmed from the depot. Default 0.
        public var minimumIdle: Int
        /// The cap: most idle stacks in the shared depot; a release beyond it goes back to the inner
        /// allocator. Each thread's cache holds up to `threadCacheSize` more. Default 256.
        public var maximumIdle: Int
        /// Idle stacks each thread keeps without a lock. 0 makes every operation go through the depot's
        /// mutex. Default 16.
        public var threadCacheSize: Int
        /// Stacks idle for this long are trimmed (given back to the inner allocator), down to the floor:
        /// checked on depot operations, on every 256th release into a thread's cache, and by `trim()`.
        /// Default 10 s.
        public var idlePeriod: Duration
        /// Bytes kept resident at the top of an idle stack; nil keeps every page. Default 64 KiB when
        /// deposited (a no-op for stacks of 64 KiB or less).
        public var hotWatermark: HotWatermark?
        /// Zero, on release, every resident page the previous owner may have written, so no data passes
        /// between owners through a reused stack. Default false: see docs/slab-and-pools.md.
        public var scrubOnRelease: Bool

        /// A configuration; every field has the documented default.
        public init(
            stack: StackRequest = StackRequest(),
            minimumIdle: Int = 0,
            maximumIdle: Int = 256,
            threadCacheSize: Int = 16,
            idlePeriod: Duration = .seconds(10),
            hotWatermark: HotWatermark? = HotWatermark(bytes: 64 << 10),
            scrubOnRelease: Bool = false
        ) {
            self.stack = stack
            self.minimumIdle = minimumIdle
            self.maximumIdle = maximumIdle
            self.threadCacheSize = threadCacheSize
            self.idlePeriod = idlePeriod
            self.hotWatermark = hotWatermark
            self.scrubOnRelease = scrubOnRelease
        }

        /// The validated sizes of the pooled stacks; an invalid field is named in the error.
        func validated() throws(StackError) -> StackSizes {
            let sizes = try StackSizes(
                configured: stack.usableSize, guardSize: stack.guardSize, type: Self.typeName,
                usableField: "stack.usableSize", guardField: "stack.guardSize")
            guard maximumIdle >= 0, maximumIdle <= PoolSlotTable.capacity else {
                throw invalid("maximumIdle", maximumIdle, allowed: "in 0...\(PoolSlotTable.capacity)")
            }
            guard minimumIdle >= 0, minimumIdle <= maximumIdle else {
                throw invalid("minimumIdle", minimumIdle, allowed: "in 0...maximumIdle (\(maximumIdle))")
            }
            guard threadCacheSize >= 0, threadCacheSize <= 1 << 16 else {
                throw invalid("threadCacheSize", threadCacheSize, allowed: "in 0...65536")
            }
            guard idlePeriod >= .zero else {
                throw invalid("idlePeriod", idlePeriod, allowed: "zero or positive")
            }
            if let hotWatermark, hotWatermark.bytes < 0 {
                throw invalid("hotWatermark.bytes", hotWatermark.bytes, allowed: "zero or positive")
            }
            return sizes
        }

        private static let typeName = "PooledStackAllocator.Configuration"

        private func invalid(_ field: String, _ value: some Any, allowed: String) -> StackError {
            .invalidConfiguration(type: Self.typeName, field: field, value: "\(value)", allowed: allowed)
        }
    }
}
