// Fuzz target: random sequences of allocate / prefault / probe / touch / release / trim over the
// mmap, slab and pooled allocators, checked against a model of every live stack.
//
// Input: the first bytes pick the allocator and its configuration (`Subject`, sometimes one that must
// be refused); then each operation is one byte and its arguments, until the input ends or 128
// operations ran. Checked:
// - a configuration or request is refused exactly when the model says so (`Expectation`), with the
//   model's error, and nothing else fails;
// - a stack has the sizes, guard mechanism and NUMA node the model expects, and never overlaps another
//   live stack;
// - every guard page is inaccessible and never resident, and every guarded live stack is in
//   GuardRegistry;
// - residency follows the prefault policy: the planned pages are resident and, where the memory is fresh
//   or discarded (mmap, slab), no page is that was neither planned nor written;
// - values written into a stack read back until it is released; where the allocator promises it, the
//   next owner of the memory reads zeros there; the allocator's counters match the model;
// - a released mmap stack is unmapped at once and leaves GuardRegistry, fewer released slab slots than
//   the slab's discard batch keep resident pages (none after trim()), a pool that scrubs leaves no
//   written value behind; after the input released
//   everything and dropped its allocator, GuardRegistry and the process's mappings are as they were
//   before (see `checkMappingsRestored`).
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import OverflowDetection
import FuzzSupport
import Logging
import StackAllocators

@_cdecl("LLVMFuzzerTestOneInput")
public func allocatorSequenceFuzzer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = ByteReader(data, size)
    checkMappingsRestored("the sequence", input: UnsafeBufferPointer(start: data, count: size)) {
        let registered = GuardRegistry.count
        do {
            var reader = input
            let subject = reader.subject()
            guard let allocator = subject.make() else { return }
            var run = SequenceRun(input: reader, subject: subject, allocator: allocator)
            run.run()
        }
        check(GuardRegistry.count == registered, "\(GuardRegistry.count) stacks in GuardRegistry after the input, \(registered) before")
    }
    return 0
}

/// One run of an input's sequence.
struct SequenceRun {
    /// The most operations one input runs.
    static let maximumOperations = 128

    var input: ByteReader
    let subject: Subject
    let allocator: any StackAllocator & StackStatsReporting
    let live = LiveStacks()
    let logger = Logger(label: "fuzz.allocator-sequence")
    /// Bytes this input may still make resident.
    var budget = residentBudget
    /// The next value written into a stack: unique within the input.
    var nextMark: UInt64 = 0x5eed_0000_0000_0001
    /// Values written into stacks since released, by address: their memory's next owner must not see
    /// them where the allocator zeroes between owners.
    var staleMarks: [UInt: UInt64] = [:]
    /// Released slab stacks that may still hold resident pages: fewer than the slab's `discardBatch`
    /// may, until `trim()`.
    var undiscarded: [StackLayout] = []

    init(input: ByteReader, subject: Subject, allocator: any StackAllocator & StackStatsReporting) {
        self.input = input
        self.subject = subject
        self.allocator = allocator
    }

    mutating func run() {
        var operations = 0
        while !input.isAtEnd && operations < Self.maximumOperations {
            operations += 1
            let op = input.byte() % 7
            switch op {
            case 0, 1: allocate()
            case 2: prefault()
            case 3: probe()
            case 4: touch()
            case 5: release()
            default: trim()
            }
        }
        while live.count > 0 { release(at: live.count - 1) }
        let stats = allocator.stats
        check(stats.live == 0, "\(subject): counters after releasing everything: \(stats)")
        check(!subject.reservesPerStack || stats.bytesReserved == 0, "\(subject): counters after releasing everything: \(stats)")
    }

    /// The live stack an operation applies to, or nil when there is none.
    mutating func pickLive() -> Int? {
        live.count == 0 ? nil : Int(input.byte()) % live.count
    }

    /// A request; for a slab or a pool, mostly one of its own shape (or smaller), which it serves.
    mutating func decodeRequest() -> StackRequest {
        var request = input.request(remainingBudget: budget)
        let shape: StackRequest? =
            switch subject {
            case .mmap: nil
            case .slab(let configuration):
                StackRequest(usableSize: configuration.usableSize, guardSize: configuration.guardSize, placement: configuration.placement)
            case .pool(let configuration, _): configuration.stack
            }
        guard let shape else { return request }
        switch input.byte() % 4 {
        case 0, 1:
            request.usableSize = shape.usableSize
            request.guardSize = shape.guardSize
            request.placement = input.bool() ? shape.placement : nil
        case 2:
            request.usableSize = input.int(in: 1...max(1, shape.usableSize))
            request.guardSize = input.int(in: 0...max(0, shape.guardSize))
            request.placement = nil
        default:
            break  // the decoded request: often too large, invalid, or placed elsewhere
        }
        if request.prefault.bytes(usable: shape.usableSize) > budget { request.prefault.strategy = .none }
        return request
    }

    mutating func allocate() {
        let request = decodeRequest()
        guard !live.isFull else { return }
        let context = { [subject] in "\(subject).allocate(usable: \(request.usableSize), guard: \(request.guardSize), prefault: \(request.prefault), placement: \(String(describing: request.placement)))" }
        let expectation = subject.expectation(for: request, allocator: allocator)
        let stack: Stack
        do {
            stack = try allocator.allocate(request)
        } catch {
            switch expectation {
            case .stack: finding("\(context()) threw \(error) for a request the model accepts")
            case .error(let expected): check(error.matches(expected), "\(context()) threw \(error), expected \(expected)")
            case .placementError: check(isPlacementError(error), "\(context()) threw \(error), expected an error naming the NUMA nodes")
            case .otherPlacement:
                guard error.code == .invalidArgument else { finding("\(context()) threw \(error), expected .invalidArgument") }
            }
            checkCounters(context())
            return
        }
        guard case .stack(let sizes, let node) = expectation else {
            finding("\(context()) returned \(stack.descriptor); the model expects \(expectation)")
        }
        adopt(stack, sizes: sizes, node: node, request: request, context: context())
        checkCounters(context())
    }

    /// Checks a new stack against the model and the other live stacks, marks it, and keeps it.
    mutating func adopt(_ stack: consuming Stack, sizes: StackSizes, node: Int?, request: StackRequest, context: @autoclosure () -> String) {
        let descriptor = stack.descriptor
        let layout = descriptor.layout
        check(layout.sizes == sizes, "\(context()): sizes \(layout.sizes), expected \(sizes)")
        let mechanism = sizes.guardSize == 0 ? GuardMechanism.none : subject.guardMechanism(mode: subject.guardMode)
        check(descriptor.guardMechanism == mechanism, "\(context()): guard \(descriptor.guardMechanism), expected \(mechanism)")
        check(descriptor.node == node, "\(context()): node \(String(describing: descriptor.node)), expected \(String(describing: node))")
        let reservation = layout.base..<layout.top
        for other in live.models {
            let otherReservation = other.layout.base..<other.layout.top
            check(!reservation.overlaps(otherReservation), "\(context()): \(layout) overlaps the live \(other.layout)")
        }
        var model = StackModel(descriptor: descriptor)
        model.residentPages = plannedPages(request.prefault, layout)
        budget -= request.prefault.bytes(usable: sizes.usableSize)
        checkResidency(model, exact: subject.residencyIsExact, context())
        checkGuard(layout, context())
        checkRegistered(layout, context())
        inheritStaleMarks(&model, context())
        // Marks at both ends: the top word and the bottom word of the usable range.
        mark(&model, at: layout.top - 8)
        mark(&model, at: layout.usableBottom)
        live.append(stack, model: model)
    }

    /// Reads what earlier owners of this memory wrote: zeros where the allocator promises them. Reading
    /// may map the zero page, so those pages may be resident from now on.
    mutating func inheritStaleMarks(_ model: inout StackModel, _ context: @autoclosure () -> String) {
        let usable = model.layout.usableRange
        for (address, value) in staleMarks where usable.contains(address) {
            staleMarks[address] = nil
            guard subject.zeroesBetweenOwners else { continue }
            let found = UnsafePointer<UInt64>(bitPattern: address)!.pointee
            check(found == 0, "\(context()): 0x\(String(address, radix: 16)) holds \(found); the previous owner wrote \(value) there")
            model.maybeResidentPages.insert(address & ~UInt(systemPageSize - 1))
        }
    }

    mutating func prefault() {
        let policy = input.prefaultPolicy()
        guard let index = pickLive() else { return }
        let layout = live.models[index].layout
        guard policy.bytes(usable: layout.sizes.usableSize) <= min(budget, prefaultCap + systemPageSize) else { return }
        let context = { [subject] in "\(subject): Prefault.apply(\(policy)) to \(layout)" }
        let result = Result { () throws(StackError) in try Prefault.apply(policy, to: layout, logger: logger) }
        switch result {
        case .failure(let error):
            guard policy.isInvalid, case .top(let depth) = policy.depth, error.isSizeError(.stack, requested: depth) else {
                finding("\(context()) threw \(error)")
            }
        case .success:
            check(!policy.isInvalid, "\(context()) accepted a negative depth")
            budget -= policy.bytes(usable: layout.sizes.usableSize)
            live.update(index) { $0.residentPages.formUnion(plannedPages(policy, layout)) }
        }
        let model = live.models[index]
        checkResidency(model, exact: subject.residencyIsExact, context())
        checkMarks(model, context())
    }

    mutating func probe() {
        guard let index = pickLive() else { return }
        let model = live.models[index]
        let context = { [subject] in "\(subject): probe of \(model.layout)" }
        checkGuard(model.layout, context())
        checkRegistered(model.layout, context())
        checkResidency(model, exact: subject.residencyIsExact, context())
        checkReport(model, context())
        checkMarks(model, context())
    }

    mutating func touch() {
        let offset = input.integer(UInt32.self)
        guard let index = pickLive(), budget >= systemPageSize else { return }
        let layout = live.models[index].layout
        let address = layout.usableBottom + UInt(Int(offset) % (layout.sizes.usableSize / 8)) * 8
        var model = live.models[index]
        mark(&model, at: address)
        budget -= systemPageSize
        live.update(index) { $0 = model }
    }

    mutating func release() {
        guard let index = pickLive() else { return }
        release(at: index)
    }

    mutating func release(at index: Int) {
        let model = live.models[index]
        let context = { [subject] in "\(subject): release of \(model.layout)" }
        checkMarks(model, context())
        checkGuard(model.layout, context())
        live.remove(at: index).release()
        switch subject {
        case .mmap:
            checkUnmapped(model.layout, context())
            if !live.models.contains(where: { $0.layout.usableBottom == model.layout.usableBottom }) {
                check(GuardRegistry.entry(forStackAt: model.layout.usableBottom) == nil, "\(context()): still in GuardRegistry")
            }
        case .slab(let configuration):
            undiscarded.removeAll { layout in
                layout.base == model.layout.base || live.models.contains { $0.layout.base == layout.base }
                    || residentAfterRelease(layout) == 0
            }
            if residentAfterRelease(model.layout) > 0 { undiscarded.append(model.layout) }
            check(
                undiscarded.count < configuration.discardBatch,
                "\(context()): \(undiscarded.count) released stacks hold resident pages; a batch is \(configuration.discardBatch)")
        case .pool(let configuration, _):
            if configuration.scrubOnRelease { checkScrubbed(model, context()) }
        }
        staleMarks.merge(model.marks) { _, new in new }
        checkCounters(context())
    }

    /// A slab or pool gives idle memory back; live stacks must not notice.
    mutating func trim() {
        switch allocator {
        case let slab as SlabStackAllocator:
            slab.trim()
            for layout in undiscarded where !live.models.contains(where: { $0.layout.base == layout.base }) {
                let resident = residentAfterRelease(layout)
                check(resident == 0, "\(subject): \(resident) pages of the released \(layout) still resident after trim()")
            }
            undiscarded = []
        case let pool as PooledStackAllocator: pool.trim()
        default: return
        }
        guard let index = pickLive() else { return }
        let model = live.models[index]
        let context = { [subject] in "\(subject): trim, then \(model.layout)" }
        checkMarks(model, context())
        checkGuard(model.layout, context())
        checkRegistered(model.layout, context())
    }

    /// Writes a fresh value at `address` (8-aligned, in the usable range) and records it.
    mutating func mark(_ model: inout StackModel, at address: UInt) {
        nextMark &+= 1
        UnsafeMutablePointer<UInt64>(bitPattern: address)!.pointee = nextMark
        model.marks[address] = nextMark
        model.residentPages.insert(address & ~UInt(systemPageSize - 1))
    }

    /// A guarded stack is in GuardRegistry with its layout.
    func checkRegistered(_ layout: StackLayout, _ context: @autoclosure () -> String) {
        guard layout.sizes.guardSize > 0 else { return }
        let entry = GuardRegistry.entry(forStackAt: layout.usableBottom)
        check(entry?.guardRange == layout.guardRange && entry?.usableRange == layout.usableRange, "\(context()): GuardRegistry holds \(String(describing: entry))")
        check(GuardRegistry.entry(guarding: layout.usableBottom - 1)?.usableRange == layout.usableRange, "\(context()): the guard's top byte is not found in GuardRegistry")
    }

    /// The allocator's counters agree with the live stacks.
    func checkCounters(_ context: @autoclosure () -> String) {
        let stats = allocator.stats
        check(stats.live == live.count, "\(context()): stats count \(stats.live) live stacks, the model \(live.count)")
        let reserved = live.models.reduce(0) { $0 + $1.layout.sizes.total }
        check(!subject.reservesPerStack || stats.bytesReserved == reserved, "\(context()): stats reserve \(stats.bytesReserved) bytes, the model \(reserved)")
    }
}

/// The system pages a policy's plan makes resident on `layout` (none for `.none` or an invalid depth).
func plannedPages(_ policy: PrefaultPolicy, _ layout: StackLayout) -> Set<UInt> {
    guard policy.strategy != .none, let plan = try? PrefaultPlan(layout: layout, depth: policy.depth) else { return [] }
    return Set(stride(from: plan.range.lowerBound, to: plan.range.upperBound, by: systemPageSize))
}
