import CStackSupport
import Logging
import Synchronization

/// How a stack's pages are made resident before the fiber runs.
public enum PrefaultStrategy: String, Sendable, Hashable, CaseIterable, Codable {
    /// Nothing: pages fault in as the stack grows.
    case none
    /// Write each page of the usable range (or the top `depth` of it), top down, from the calling thread.
    case touch
    /// `MADV_POPULATE_WRITE` over the planned range (Linux >= 5.14); falls back to `touch` where missing.
    case populate
}

/// A prefault strategy and how deep it goes.
public struct PrefaultPolicy: Sendable, Hashable {
    /// The strategy.
    public var strategy: PrefaultStrategy
    /// How much of the stack, from the top.
    public var depth: PrefaultDepth

    /// A policy of `strategy` over `depth` (default: the whole usable range).
    public init(_ strategy: PrefaultStrategy, depth: PrefaultDepth = .all) {
        self.strategy = strategy
        self.depth = depth
    }

    /// No prefault.
    public static let none = PrefaultPolicy(.none)
}

/// Runs prefault policies over stack layouts. Only the usable range is ever touched; never a guard.
@_spi(Benchmarks) public enum Prefault {
    /// Whether `MADV_POPULATE_WRITE` (Linux >= 5.14) works here, and if not why: probed once on a scratch page.
    package static let populateWrite = AdviceProbe(
        Int32(FS_MADV_POPULATE_WRITE), name: "MADV_POPULATE_WRITE", lacks: "needs Linux >= 5.14 (running \(kernelRelease))",
        since: (5, 14), pages: 1)
    /// Whether `MADV_POPULATE_WRITE` works here (`populateWrite`).
    package static let populateSupported = populateWrite.isSupported
    /// Set once the missing `MADV_POPULATE_WRITE` has been logged.
    private static let fallbackLogged = Atomic<Bool>(false)

    /// Applies `policy` to `layout`. A failure throws `.systemCallFailed` and is logged on `logger`.
    @_spi(Benchmarks) public static func apply(
        _ policy: PrefaultPolicy, to layout: StackLayout, logger: Logger = Logger(label: "fiberstacks.prefault")
    ) throws(StackError) {
        guard policy.strategy != .none else { return }
        let plan = try PrefaultPlan(layout: layout, depth: policy.depth)
        guard plan.pageCount > 0 else { return }
        if policy.strategy == .populate {
            if populateSupported {
                let range = plan.range
                let size = Int(range.upperBound - range.lowerBound)
                guard case .failure(let errno) = Syscall.advise(range.lowerBound, size: size, Int32(FS_MADV_POPULATE_WRITE))
                else { return }
                let error = StackError.prefaultFailed(errno, strategy: .populate, address: range.lowerBound)
                logger.error("prefault failed", metadata: ["error": "\(error)", "stack": "\(layout)"])
                throw error
            }
            if !fallbackLogged.exchange(true, ordering: .relaxed) {
                logger.warning(
                    "MADV_POPULATE_WRITE does not work here; populate falls back to touch",
                    metadata: ["why": "\(populateWrite.missing ?? "")"])
            }
        }
        for page in plan {
            fs_touch_page(UnsafeMutableRawPointer(bitPattern: page))
        }
    }
}
