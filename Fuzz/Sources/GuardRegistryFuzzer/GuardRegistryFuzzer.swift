// Fuzz target: GuardRegistry against a dictionary model.
//
// Input: up to 256 operations — register, unregister, relabel, look up by usable bottom, look up by
// fault address, and a bulk register-then-unregister of up to 7,000 stacks (which grows the hash index).
// Stacks are placed in an address arena (the registry never touches the memory): densely, so guards
// overlap other stacks and stacks sit back to back; in hash-colliding groups, so the open-addressed
// index builds clusters and deletes by backward shift; and right above or below a registered stack.
// Checked:
// - register always succeeds, replacing a stack registered at the same usable bottom; unregister and
//   relabel succeed exactly for registered ones; ending a registration succeeds exactly for the one
//   registered there now, never for one replaced or ended before; `count` follows the model;
// - `entry(forStackAt:)` returns exactly the model's entry (ranges and stored label, see `storedLabel`);
// - `entry(guarding:)` finds an entry for an address exactly when some registered guard contains it,
//   and then one whose guard does (addresses at every edge: guard low, guard high - 1, usable bottom,
//   top, one below); an empty guard never matches;
// - at the end of every input everything is unregistered and the registry is as empty as before.
import FuzzSupport
import GuardPages
@_spi(Benchmarks) import OverflowDetection

@_cdecl("LLVMFuzzerTestOneInput")
public func guardRegistryFuzzer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var run = RegistryRun(input: ByteReader(data, size))
    run.run()
    return 0
}

/// The arena the registered stacks are placed in (never mapped: the registry only stores ranges).
let arenaBase: UInt = 0x5000_0000_0000
/// Where the bulk operation places its stacks, away from the arena.
let bulkBase: UInt = 0x6000_0000_0000
let page = UInt(systemPageSize)
/// The most pages of guard a registered stack has: the registry probes one bucket per page of the
/// largest guard ever registered on every address lookup, for the rest of the process's life.
let maximumGuardPages = 64

/// Arena page numbers whose usable bottoms share a bucket of the index (the top 16 bits of the hash,
/// so also the top 13, 14 and 15 bits of the smaller generations), in 32 groups of 8. The hash spreads
/// consecutive pages evenly, so the groups are gathered from the first million pages of the arena.
let collidingGroups: [[UInt]] = {
    func bucket(_ index: UInt) -> UInt { (((arenaBase + index * page) >> 12) &* 0x9E37_79B9_7F4A_7C15) >> 48 }
    var groups: [UInt: [UInt]] = [:]
    for index in UInt(0)..<32 { groups[bucket(index), default: []].append(index) }
    for index in UInt(32)..<(1 << 20) {
        let key = bucket(index)
        if let members = groups[key], members.count < 8 { groups[key]!.append(index) }
    }
    let full = groups.values.filter { $0.count == 8 }
    check(!full.isEmpty, "no colliding usable bottoms in the arena: has the registry's hash changed?")
    return full.sorted { $0[0] < $1[0] }
}()

/// One input's run against the model.
struct RegistryRun {
    /// The most operations an input runs.
    static let maximumOperations = 256

    var input: ByteReader
    /// The model: registered stacks by usable bottom, with the label as stored and the registration.
    var model: [UInt: (layout: StackLayout, label: String, registration: UInt64)] = [:]
    /// Registrations replaced or ended (the most recent 64): ending one again must fail.
    var retired: [(bottom: UInt, registration: UInt64)] = []
    let baseline = GuardRegistry.count

    init(input: ByteReader) {
        self.input = input
    }

    mutating func run() {
        var operations = 0
        while !input.isAtEnd && operations < Self.maximumOperations {
            operations += 1
            switch input.byte() % 8 {
            case 0, 1: register()
            case 2: unregister()
            case 3: relabel()
            case 4: lookUpStack()
            case 5, 6: lookUpAddress()
            default: bulk()
            }
            check(GuardRegistry.count == baseline + model.count, "count \(GuardRegistry.count), model \(baseline + model.count)")
        }
        for layout in model.values.map(\.layout) {
            check(GuardRegistry.unregister(layout), "unregistering \(layout) at the end failed")
        }
        check(GuardRegistry.count == baseline, "\(GuardRegistry.count) stacks registered after the input, \(baseline) before")
    }

    /// A usable bottom: dense in the arena, from a colliding group, or next to a registered stack.
    mutating func usableBottom() -> UInt {
        switch input.byte() % 4 {
        case 0, 1:
            return arenaBase + UInt(input.int(in: maximumGuardPages...(maximumGuardPages + 255))) * page
        case 2:
            let group = input.pick(collidingGroups)
            return arenaBase + input.pick(group) * page
        default:
            guard let neighbour = pickRegistered() else { return arenaBase + UInt(maximumGuardPages) * page }
            // Right above it (its top), or where a stack of the same size ends at its guard's low end.
            return input.bool() ? neighbour.top : neighbour.base - UInt(neighbour.sizes.usableSize)
        }
    }

    /// A registered stack, or nil when there is none.
    mutating func pickRegistered() -> StackLayout? {
        guard !model.isEmpty else { return nil }
        let keys = model.keys.sorted()
        return model[keys[Int(input.byte()) % keys.count]]!.layout
    }

    /// A layout with its usable range at `bottom`.
    mutating func layout(at bottom: UInt) -> StackLayout? {
        let guardPages = input.int(in: 0...maximumGuardPages)
        let usablePages = input.int(in: 1...64)
        guard bottom >= UInt(guardPages) * page,
            let sizes = try? StackSizes(usableSize: usablePages * Int(page), guardSize: guardPages * Int(page)),
            let layout = try? StackLayout(base: bottom - UInt(guardPages) * page, sizes: sizes)
        else { return nil }
        return layout
    }

    mutating func register() {
        let bottom = usableBottom()
        let label = input.label(maximumLength: 80)
        guard let layout = layout(at: bottom) else { return }
        let context = { "register(\(layout), label: \(label.debugDescription))" }
        do throws(StackError) {
            let registration = try GuardRegistry.register(layout, label: label)
            if let replaced = model[bottom] {
                check(registration > replaced.registration, "\(context()) returned \(registration), not above \(replaced.registration)")
                retire(bottom, replaced.registration)
            }
            check(registration != 0, "\(context()) returned registration 0")
            model[bottom] = (layout, storedLabel(label, capacity: GuardRegistry.labelCapacity), registration)
        } catch {
            finding("\(context()) threw \(error)")
        }
    }

    mutating func retire(_ bottom: UInt, _ registration: UInt64) {
        retired.append((bottom, registration))
        if retired.count > 64 { retired.removeFirst() }
    }

    mutating func unregister() {
        switch input.byte() % 3 {
        case 0:
            // The registration registered there now: ends it.
            guard let layout = pickRegistered(), let current = model[layout.usableBottom] else { return }
            check(GuardRegistry.end(current.registration, at: layout.usableBottom), "ending \(layout)'s registration failed")
            retire(layout.usableBottom, current.registration)
            model[layout.usableBottom] = nil
        case 1:
            // A registration replaced or ended before: changes nothing.
            guard !retired.isEmpty else { return }
            let (bottom, registration) = retired[Int(input.byte()) % retired.count]
            check(!GuardRegistry.end(registration, at: bottom), "ending retired registration \(registration) at \(bottom) succeeded")
        default:
            guard let layout = input.bool() ? pickRegistered() : layout(at: usableBottom()) else { return }
            let removed = GuardRegistry.unregister(layout)
            check(removed == (model[layout.usableBottom] != nil), "unregister(\(layout)) returned \(removed)")
            if let current = model[layout.usableBottom] { retire(layout.usableBottom, current.registration) }
            model[layout.usableBottom] = nil
        }
    }

    mutating func relabel() {
        let bottom = input.bool() ? (pickRegistered()?.usableBottom ?? 0) : usableBottom()
        let label = input.label(maximumLength: 80)
        let changed = GuardRegistry.setLabel(label, forStackAt: bottom)
        check(changed == (model[bottom] != nil), "setLabel(\(label.debugDescription), forStackAt: 0x\(String(bottom, radix: 16))) returned \(changed)")
        if changed { model[bottom]!.label = storedLabel(label, capacity: GuardRegistry.labelCapacity) }
    }

    mutating func lookUpStack() {
        let bottom = input.bool() ? (pickRegistered()?.usableBottom ?? 0) : usableBottom() &+ UInt(bitPattern: input.int(in: -1...1))
        let entry = GuardRegistry.entry(forStackAt: bottom)
        let context = "entry(forStackAt: 0x\(String(bottom, radix: 16)))"
        guard let expected = model[bottom] else {
            check(entry == nil, "\(context) found \(String(describing: entry)); the model has nothing there")
            return
        }
        guard let entry else { finding("\(context) found nothing; the model has \(expected.layout)") }
        checkEntry(entry, expected.layout, expected.label, context)
    }

    mutating func lookUpAddress() {
        let address: UInt
        if let layout = input.bool() ? pickRegistered() : nil {
            let edges = [layout.base, layout.base &- 1, layout.usableBottom &- 1, layout.usableBottom, layout.top &- 1, layout.top, layout.base &+ (layout.usableBottom - layout.base) / 2]
            address = input.pick(edges)
        } else {
            address = arenaBase &+ UInt(input.int(in: 0...(1 << 24)))  // anywhere in the first 16 MiB of the arena
        }
        let context = "entry(guarding: 0x\(String(address, radix: 16)))"
        let found = GuardRegistry.entry(guarding: address)
        let holders = model.values.filter { $0.layout.guardRange.contains(address) }
        guard let found else {
            check(holders.isEmpty, "\(context) found nothing; guards of \(holders.map(\.layout)) contain it")
            return
        }
        guard let holder = model[found.usableRange.lowerBound] else {
            finding("\(context) found \(found), which is not registered")
        }
        check(found.guardRange.contains(address), "\(context) found \(found), whose guard does not contain it")
        checkEntry(found, holder.layout, holder.label, context)
    }

    /// Registers `count` stacks away from the arena (growing the hash index past its first size),
    /// looks some of them up, and unregisters them all.
    mutating func bulk() {
        let count = input.int(in: 1...7000)
        let guardPages = UInt(input.int(in: 0...4))
        let spacing = guardPages + 1
        for index in 0..<UInt(count) {
            let bottom = bulkBase + (index * spacing + guardPages) * page
            let layout = try! StackLayout(base: bottom - guardPages * page, sizes: StackSizes(usableSize: Int(page), guardSize: Int(guardPages * page)))
            do throws(StackError) { try GuardRegistry.register(layout) } catch { finding("bulk register(\(layout)) threw \(error)") }
        }
        check(GuardRegistry.count == baseline + model.count + count, "count \(GuardRegistry.count) after registering \(count) stacks")
        for index in stride(from: 0, to: UInt(count), by: max(1, count / 64)).map({ UInt($0) }) {
            let bottom = bulkBase + (index * spacing + guardPages) * page
            check(GuardRegistry.entry(forStackAt: bottom)?.usableRange.lowerBound == bottom, "bulk stack 0x\(String(bottom, radix: 16)) not found")
            if guardPages > 0 {
                check(GuardRegistry.entry(guarding: bottom - 1)?.usableRange.lowerBound == bottom, "bulk guard below 0x\(String(bottom, radix: 16)) not found")
            }
        }
        for index in 0..<UInt(count) {
            let bottom = bulkBase + (index * spacing + guardPages) * page
            let layout = try! StackLayout(base: bottom - guardPages * page, sizes: StackSizes(usableSize: Int(page), guardSize: Int(guardPages * page)))
            check(GuardRegistry.unregister(layout), "bulk unregister(\(layout)) failed")
        }
    }

    /// An entry agrees with the model's layout and stored label.
    func checkEntry(_ entry: GuardRegistry.Entry, _ layout: StackLayout, _ label: String, _ context: @autoclosure () -> String) {
        check(entry.guardRange == layout.guardRange && entry.usableRange == layout.usableRange, "\(context()): \(entry) for the model's \(layout)")
        check(entry.label == label, "\(context()): label \(entry.label.debugDescription), the model stores \(label.debugDescription)")
    }
}
