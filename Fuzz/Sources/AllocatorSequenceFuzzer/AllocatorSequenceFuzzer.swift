// Fuzz target: random sequences of allocate / prefault / probe / touch / release over the allocators,
// checked against a model of every live stack.
//
// Input: the first byte picks the allocator (`Subject`); then each operation is one byte and its
// arguments, until the input ends or 128 operations ran. Checked:
// - a request is refused exactly when the model says it is invalid (sizes StackSizes rejects, a
//   negative prefault depth), with the model's error, and nothing else fails;
// - a stack has the sizes and guard mechanism asked for, and never overlaps another live stack;
// - every guard page is inaccessible and never resident;
// - residency follows the prefault policy: the planned pages are resident and, on fresh memory, no
//   other page that was not written;
// - values written into a stack read back until it is released; the allocator's counters match;
// - a released mmap stack is unmapped at once, and after the input released everything and dropped
//   its allocator the process has the mappings it had before (see `checkMappingsRestored`).
import FuzzSupport
import Logging
import StackAllocators

@_cdecl("LLVMFuzzerTestOneInput")
public func allocatorSequenceFuzzer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = ByteReader(data, size)
    checkMappingsRestored("the sequence") {
        var run = SequenceRun(input: input)
        run.run()
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
    /// Stacks in GuardRegistry before the input.
    let registeredBefore = GuardRegistry.count
    /// Bytes this input may still make resident.
    var budget = residentBudget
    /// The next value written into a stack: unique within the input.
    var nextMark: UInt64 = 0x5eed_0000_0000_0001

    init(input: ByteReader) {
        self.input = input
        subject = self.input.pick(Subject.allCases)
        allocator = subject.make()
    }

    mutating func run() {
        var operations = 0
        while !input.isAtEnd && operations < Self.maximumOperations {
            operations += 1
            switch input.byte() % 6 {
            case 0, 1: allocate()
            case 2: prefault()
            case 3: probe()
            case 4: touch()
            default: release()
            }
        }
        while live.count > 0 { release(at: live.count - 1) }
        let stats = allocator.stats
        check(stats.live == 0 && stats.bytesReserved == 0, "\(subject): counters after releasing everything: \(stats)")
        check(GuardRegistry.count == registeredBefore, "\(subject): \(GuardRegistry.count) stacks in GuardRegistry after releasing everything, \(registeredBefore) before")
    }

    /// The live stack an operation applies to, or nil when there is none.
    mutating func pickLive() -> Int? {
        live.count == 0 ? nil : Int(input.byte()) % live.count
    }

    mutating func allocate() {
        let request = input.request(remainingBudget: budget)
        guard !live.isFull else { return }
        let context = { [subject] in "\(subject).allocate(usable: \(request.usableSize), guard: \(request.guardSize), prefault: \(request.prefault))" }
        let sizes = Result { () throws(StackError) in try StackSizes(usable: request.usableSize, guard: request.guardSize) }
        let stack: Stack
        do {
            stack = try allocator.allocate(request)
        } catch {
            switch sizes {
            case .failure(let expected):
                check(error == expected, "\(context()) threw \(error), expected \(expected)")
            case .success:
                if let placement = request.placement, !placement.isValid {
                    check(isPlacementError(error), "\(context()) threw \(error), expected an error naming the NUMA nodes")
                    break
                }
                guard request.prefault.isInvalid, case .top(let depth) = request.prefault.depth else {
                    finding("\(context()) threw \(error) for a valid request")
                }
                guard case .invalidSize(requested: depth, _) = error else {
                    finding("\(context()) threw \(error), expected .invalidSize for the prefault depth")
                }
            }
            checkCounters(context())
            return
        }
        switch sizes {
        case .failure(let expected):
            finding("\(context()) returned \(stack.descriptor), expected \(expected)")
        case .success(let sizes):
            check(!request.prefault.isInvalid, "\(context()) accepted a negative prefault depth")
            check(request.placement?.isValid ?? true, "\(context()) accepted a placement on nodes without memory")
            adopt(stack, sizes: sizes, request: request, context: context())
        }
        checkCounters(context())
    }

    /// Checks a new stack against its request and the other live stacks, marks it, and keeps it.
    mutating func adopt(_ stack: consuming Stack, sizes: StackSizes, request: StackRequest, context: @autoclosure () -> String) {
        let descriptor = stack.descriptor
        let layout = descriptor.layout
        check(layout.sizes == sizes, "\(context()): sizes \(layout.sizes), expected \(sizes)")
        let mechanism = sizes.guardSize == 0 ? GuardMechanism.none : subject.guardMechanism(of: allocator)
        check(descriptor.guardMechanism == mechanism, "\(context()): guard \(descriptor.guardMechanism), expected \(mechanism)")
        let reservation = layout.base..<layout.top
        for other in live.models {
            let otherReservation = other.layout.base..<other.layout.top
            check(!reservation.overlaps(otherReservation), "\(context()): \(layout) overlaps the live \(other.layout)")
        }
        var model = StackModel(descriptor: descriptor)
        model.residentPages = plannedPages(request.prefault, layout)
        budget -= request.prefault.bytes(usable: sizes.usable)
        checkResidency(model, exact: subject.residencyIsExact, context())
        checkGuard(layout, context())
        checkRegistered(layout, context())
        check(descriptor.node == request.placement?.homeNode, "\(context()): node \(String(describing: descriptor.node)), placed on \(String(describing: request.placement))")
        // Marks at both ends: the top word and the bottom word of the usable range.
        mark(&model, at: layout.top - 8)
        mark(&model, at: layout.usableBottom)
        live.append(stack, model: model)
    }

    mutating func prefault() {
        let policy = input.prefaultPolicy()
        guard let index = pickLive() else { return }
        let layout = live.models[index].layout
        guard policy.bytes(usable: layout.sizes.usable) <= min(budget, prefaultCap + systemPageSize) else { return }
        let context = { [subject] in "\(subject): Prefault.apply(\(policy)) to \(layout)" }
        let result = Result { () throws(StackError) in try Prefault.apply(policy, to: layout, logger: logger) }
        switch result {
        case .failure(let error):
            guard policy.isInvalid, case .top(let depth) = policy.depth, case .invalidSize(requested: depth, _) = error else {
                finding("\(context()) threw \(error)")
            }
        case .success:
            check(!policy.isInvalid, "\(context()) accepted a negative depth")
            budget -= policy.bytes(usable: layout.sizes.usable)
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
        let address = layout.usableBottom + UInt(Int(offset) % (layout.sizes.usable / 8)) * 8
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
        if subject.unmapsOnRelease { checkUnmapped(model.layout, context()) }
        if subject.registersGuards, !live.models.contains(where: { $0.layout.usableBottom == model.layout.usableBottom }) {
            check(GuardRegistry.entry(forStackAt: model.layout.usableBottom) == nil, "\(context()): still in GuardRegistry")
        }
        checkCounters(context())
    }

    /// Writes a fresh value at `address` (8-aligned, in the usable range) and records it.
    mutating func mark(_ model: inout StackModel, at address: UInt) {
        nextMark &+= 1
        UnsafeMutablePointer<UInt64>(bitPattern: address)!.pointee = nextMark
        model.marks[address] = nextMark
        model.residentPages.insert(address & ~UInt(systemPageSize - 1))
    }

    /// A guarded stack is in GuardRegistry with its layout (when the allocator registers its stacks).
    func checkRegistered(_ layout: StackLayout, _ context: @autoclosure () -> String) {
        guard subject.registersGuards, layout.sizes.guardSize > 0 else { return }
        let entry = GuardRegistry.entry(forStackAt: layout.usableBottom)
        check(entry?.guardRange == layout.guardRange && entry?.usableRange == layout.usableRange, "\(context()): GuardRegistry holds \(String(describing: entry))")
        check(GuardRegistry.entry(guarding: layout.usableBottom - 1)?.usableRange == layout.usableRange, "\(context()): the guard's top byte is not found in GuardRegistry")
    }

    /// The allocator's counters agree with the live stacks.
    func checkCounters(_ context: @autoclosure () -> String) {
        let stats = allocator.stats
        check(stats.live == live.count, "\(context()): stats count \(stats.live) live stacks, the model \(live.count)")
        let reserved = live.models.reduce(0) { $0 + $1.layout.sizes.total }
        check(!subject.unmapsOnRelease || stats.bytesReserved == reserved, "\(context()): stats reserve \(stats.bytesReserved) bytes, the model \(reserved)")
    }
}

/// The system pages a policy's plan makes resident on `layout` (none for `.none` or an invalid depth).
func plannedPages(_ policy: PrefaultPolicy, _ layout: StackLayout) -> Set<UInt> {
    guard policy.strategy != .none, let plan = try? PrefaultPlan(layout: layout, depth: policy.depth) else { return [] }
    return Set(stride(from: plan.range.lowerBound, to: plan.range.upperBound, by: systemPageSize))
}
