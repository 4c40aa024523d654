import Synchronization

/// One worker's jobs that have not started: its owner takes the newest (depth first, so a job that waits
/// for the jobs it just spawned finds them next and few fibers stay suspended); idle workers steal the
/// oldest half. Only jobs live here: a started job is a fiber, and fibers never change workers.
final class JobQueue: Sendable {
    /// Most jobs one steal takes: enough that a thief takes the lock rarely, few enough that a burst
    /// spreads over every idle worker.
    static let stealBatch = 32

    private let ring = Lock(Ring())
    /// Mirror of the count, written under the lock and read without it to skip empty queues (it may lag
    /// by the operations in flight).
    private let approximateCount = Atomic<Int>(0)

    /// Adds one job.
    func push(_ job: Job) {
        ring.withLock { ring in
            ring.append(job)
            approximateCount.store(ring.count, ordering: .relaxed)
        }
    }

    /// Adds jobs under one lock.
    func push(contentsOf jobs: ArraySlice<Job>) {
        guard !jobs.isEmpty else { return }
        ring.withLock { ring in
            for job in jobs { ring.append(job) }
            approximateCount.store(ring.count, ordering: .relaxed)
        }
    }

    /// The newest job, for the owner.
    func popNewest() -> Job? {
        ring.withLock { ring in
            let job = ring.removeLast()
            approximateCount.store(ring.count, ordering: .relaxed)
            return job
        }
    }

    /// The oldest half of the jobs (at least one, at most `stealBatch`), oldest first, for a thief.
    func stealOldestHalf() -> [Job] {
        ring.withLock { ring in
            let count = min(Self.stealBatch, (ring.count + 1) / 2)
            guard count > 0 else { return [] }
            var stolen: [Job] = []
            stolen.reserveCapacity(count)
            for _ in 0..<count { stolen.append(ring.removeFirst()!) }
            approximateCount.store(ring.count, ordering: .relaxed)
            return stolen
        }
    }

    /// Frees a large empty ring's slots (a burst of a million jobs leaves 32 MiB of them). For a quiet
    /// worker only: shrinking whenever the queue empties would make every burst grow the ring again.
    func releaseSpareCapacity() {
        ring.withLock { $0.shrinkIfEmpty() }
    }

    /// Whether the queue looks empty (without taking the lock).
    var looksEmpty: Bool { approximateCount.load(ordering: .relaxed) <= 0 }
}

/// A growable ring buffer of jobs: append at the back, remove from either end, all O(1) amortized.
private struct Ring {
    private static let initialCapacity = 64
    private static let keptCapacity = 4096
    private var slots: [Job?] = Array(repeating: nil, count: Ring.initialCapacity)
    private var head = 0
    private(set) var count = 0

    mutating func append(_ job: Job) {
        if count == slots.count { grow() }
        slots[(head + count) & (slots.count - 1)] = job
        count += 1
    }

    mutating func removeFirst() -> Job? {
        guard count > 0 else { return nil }
        let job = slots[head].take()
        head = (head + 1) & (slots.count - 1)
        count -= 1
        return job
    }

    mutating func removeLast() -> Job? {
        guard count > 0 else { return nil }
        count -= 1
        return slots[(head + count) & (slots.count - 1)].take()
    }

    /// Goes back to the first size when empty and large.
    mutating func shrinkIfEmpty() {
        guard count == 0, slots.count > Self.keptCapacity else { return }
        slots = Array(repeating: nil, count: Self.initialCapacity)
        head = 0
    }

    /// Doubles the capacity (always a power of two), unwrapping the contents to start at 0.
    private mutating func grow() {
        var larger = [Job?](repeating: nil, count: slots.count * 2)
        for offset in 0..<count { larger[offset] = slots[(head + offset) & (slots.count - 1)].take() }
        slots = larger
        head = 0
    }
}
