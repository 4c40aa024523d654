import FiberScheduler
import StackTestSupport
import Testing

/// Hands out stacks of the inner allocator with a 4 KiB guard, whatever the request says.
private final class SmallGuardAllocator: StackAllocator {
    let inner: MmapStackAllocator
    init() throws { inner = try MmapStackAllocator() }

    func allocate(_ request: StackRequest) throws(StackError) -> Stack {
        var request = request
        request.guardSize = 4096
        return try inner.allocate(request)  // the stack goes back to `inner`
    }

    func release(_ descriptor: StackDescriptor, token: StackReleaseToken) {
        preconditionFailure("the stacks belong to the inner allocator")
    }
}

@Suite("Guards at least as large as the largest frame")
struct GuardSizingTests {
    /// The largest fixed frame of this process, as the audit finds it.
    let largest: GuardSizing.Requirement

    init() throws {
        largest = try #require(try GuardSizing.requirement())
    }

    @Test("GuardSizing.check refuses a guard smaller than the largest frame, naming the function, and accepts one that covers it")
    func publicCheck() throws {
        do {
            try GuardSizing.check(guardSize: 4096)
            Issue.record("a 4 KiB guard passed, although \(largest.function) has a \(largest.frameBytes)-byte frame")
        } catch let error where error.code == .guardSmallerThanFrame {
            guard case .guardSmallerThanFrame(let guardSize, let function, let object, let frameBytes, let needed) = error.reason
            else { Issue.record("\(error)"); return }
            #expect(guardSize == 4096 && function == largest.function && object == largest.object)
            #expect(frameBytes == largest.frameBytes && needed == largest.guardSize && needed >= frameBytes)
        } catch {
            Issue.record("unexpected error: \(error)")
        }
        try GuardSizing.check(guardSize: largest.guardSize)
        #expect(largest.guardSize <= StackRequest.defaultGuardSize, "the default guard no longer covers \(largest.function) (\(largest.frameBytes) B)")
    }

    @Test("A scheduler with a guard smaller than the largest frame does not start", arguments: [0, 1, 4096])
    func schedulerRefusesSmallGuard(_ guardSize: Int) throws {
        var config = testConfig(workers: 1, initial: 1, target: 1)
        config.guardSize = guardSize
        do {
            let scheduler = try FiberScheduler(config: config)
            scheduler.shutdown()
            Issue.record("a scheduler started with a \(guardSize)-byte guard")
        } catch let error where error.underlying?.code == .guardSmallerThanFrame {
            guard error.code == .invalidConfiguration,
                case .guardSmallerThanFrame(_, let function, _, let frameBytes, _)? = error.underlying?.reason
            else { Issue.record("\(error)"); return }
            #expect(function == largest.function && frameBytes == largest.frameBytes)
        } catch {
            Issue.record("unexpected error: \(error)")
        }
    }

    @Test("allowGuardSmallerThanLargestFrame starts it anyway, with a warning that names the frame")
    func optOutWarns() throws {
        let (logger, log) = CapturingLogHandler.logger()
        var config = testConfig(workers: 1, initial: 1, target: 1)
        config.guardSize = 4096
        config.allowGuardSmallerThanLargestFrame = true
        config.logger = logger
        let scheduler = try FiberScheduler(config: config)
        #expect(try scheduler.submit { 7 }.wait() == 7)
        scheduler.shutdown()
        let warnings = log.all.filter { $0.level == .warning && $0.message.contains(largest.function) }
        #expect(warnings.count == 1, "\(log.all)")
    }

    @Test("An allocator that hands out smaller guards than requested is refused when the scheduler starts")
    func allocatorIgnoringTheGuardIsRefused() throws {
        let config = testConfig(workers: 1, initial: 1, target: 1, allocator: try SmallGuardAllocator())
        do {
            let scheduler = try FiberScheduler(config: config)
            scheduler.shutdown()
            Issue.record("a scheduler started on stacks with 4 KiB guards")
        } catch let error where error.underlying?.code == .guardSmallerThanFrame {
            guard case .guardSmallerThanFrame(let guardSize, _, _, _, _)? = error.underlying?.reason else {
                Issue.record("\(error)"); return
            }
            #expect(guardSize == 4096)
        } catch {
            Issue.record("unexpected error: \(error)")
        }
    }
}
