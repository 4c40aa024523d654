/// Jobs a worker ran to the end and has not yet signed off on: consecutive jobs of one counter are
/// subtracted from it at once, so workers running jobs of one counter side by side do not pass its cache
/// line back and forth once per job. The worker settles before it runs anything other than the next job
/// of the same counter (another counter's job, a resumed fiber) and when it finds no job to start (before
/// it sleeps), so a counter still reaches zero when its last job ends, not when unrelated work does; and
/// every `limit` jobs, so `JobCounter.value` lags by at most that many.
struct JobSettlement {
    /// Most jobs held before settling.
    static let limit = 64
    /// The counter of the jobs held; each holds one reference to it.
    private var counter: Unmanaged<JobCounter>?
    private var ended = 0

    /// Whether a job of `counter` (its `Job.counterIdentity`) can join the jobs held without a settlement.
    func continues(_ counter: UnsafeMutableRawPointer) -> Bool {
        self.counter.map { $0.toOpaque() == counter } ?? true
    }

    /// A job of `counter` ended well; the job's reference to it comes with it.
    mutating func add(_ counter: Unmanaged<JobCounter>) {
        if self.counter?.toOpaque() != counter.toOpaque() {
            settle()
            self.counter = counter
        }
        ended += 1
        if ended == Self.limit { settle() }
    }

    /// Signs off on the jobs held: one subtraction, then the references they held.
    mutating func settle() {
        guard let counter else { return }
        let count = ended
        self.counter = nil
        ended = 0
        counter.takeUnretainedValue().decrement(by: count)
        for _ in 0..<count { counter.release() }
    }
}
