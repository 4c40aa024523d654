@_spi(Benchmarks) import GuardPages
import FuzzSupport
import StackAllocators

/// Stacks larger than this (in system pages) are probed in windows rather than page by page.
let pagesProbedWhole = 4096

/// The value of a probe, or a finding if the probe itself failed.
func probing<T>(_ what: @autoclosure () -> String, _ body: () throws(StackError) -> T) -> T {
    do { return try body() } catch { finding("probing \(what()) failed: \(error)") }
}

/// The subranges of `range` (page-aligned) that are probed: all of it when small, else its first and
/// last 32 pages and 16 pages spread between them.
func probeWindows(_ range: Range<UInt>) -> [Range<UInt>] {
    let page = UInt(systemPageSize)
    let pages = UInt(range.count) / page
    guard pages > UInt(pagesProbedWhole) else { return range.isEmpty ? [] : [range] }
    var windows = [range.lowerBound..<(range.lowerBound + 32 * page), (range.upperBound - 32 * page)..<range.upperBound]
    for step in 1...16 {
        let start = range.lowerBound + (pages * UInt(step) / 17) * page
        windows.append(start..<(start + page))
    }
    return windows
}

/// Every guard page is inaccessible and not resident (probing the edges byte by byte too).
func checkGuard(_ layout: StackLayout, _ context: @autoclosure () -> String) {
    let guardRange = layout.guardRange
    guard !guardRange.isEmpty else { return }
    for window in probeWindows(guardRange) {
        let resident = probing("guard residency") { () throws(StackError) in try Probe.residentPages(in: window) }
        check(resident == 0, "\(context()): \(resident) guard pages resident in \(window)")
        let accessible = probing("guard access") { () throws(StackError) in try Probe.accessiblePages(in: window) }
        check(accessible == 0, "\(context()): \(accessible) guard pages accessible in \(window)")
    }
    for edge in [guardRange.lowerBound, guardRange.upperBound - 1] {
        let accessible = probing("guard edge") { () throws(StackError) in try Probe.isAccessible(edge) }
        check(!accessible, "\(context()): guard byte 0x\(String(edge, radix: 16)) is accessible")
    }
}

/// The resident system pages of `range`.
func residentPages(in range: Range<UInt>) -> Set<UInt> {
    let residency = probing("residency of \(range)") { () throws(StackError) in try Probe.residency(of: range) }
    var pages = Set<UInt>()
    for (index, resident) in residency.enumerated() where resident {
        pages.insert(range.lowerBound + UInt(index * systemPageSize))
    }
    return pages
}

/// The usable range's residency agrees with the model: every page known to be resident is, and when
/// `exact` (fresh memory nobody else touches) no other page is.
func checkResidency(_ model: StackModel, exact: Bool, _ context: @autoclosure () -> String) {
    let windows = probeWindows(model.layout.usableRange)
    for window in windows {
        let resident = residentPages(in: window)
        let known = model.residentPages.filter { window.contains($0) }
        check(known.isSubset(of: resident), "\(context()): pages \(known.subtracting(resident).sorted().map { "0x" + String($0, radix: 16) }) should be resident in \(window)")
        if exact {
            check(resident.subtracting(model.maybeResidentPages) == known.subtracting(model.maybeResidentPages), "\(context()): pages \(resident.subtracting(known).sorted().map { "0x" + String($0, radix: 16) }) are resident but were never touched")
        }
    }
    for page in model.residentPages where !windows.contains(where: { $0.contains(page) }) {
        check(!residentPages(in: page..<(page + UInt(systemPageSize))).isEmpty, "\(context()): page 0x\(String(page, radix: 16)) should be resident")
    }
}

/// StackProbeReport agrees with the direct probes (only for stacks small enough to probe whole).
func checkReport(_ model: StackModel, _ context: @autoclosure () -> String) {
    let layout = model.layout
    guard layout.sizes.total / systemPageSize <= pagesProbedWhole else { return }
    let report = probing("StackProbeReport") { () throws(StackError) in try StackProbeReport(layout: layout) }
    check(report.guardPages == layout.sizes.guardSize / systemPageSize, "\(context()): report counts \(report.guardPages) guard pages")
    check(report.usablePages == layout.sizes.usableSize / systemPageSize, "\(context()): report counts \(report.usablePages) usable pages")
    check(layout.sizes.guardSize == 0 || report.guardIsSound, "\(context()): report says the guard is not sound: \(report)")
    check(report.residentUsablePages >= model.residentPages.count, "\(context()): report has \(report.residentUsablePages) resident pages, \(model.residentPages.count) known")
}

/// Every value written into the stack reads back.
func checkMarks(_ model: StackModel, _ context: @autoclosure () -> String) {
    for (address, value) in model.marks {
        let found = UnsafePointer<UInt64>(bitPattern: address)!.pointee
        check(found == value, "\(context()): 0x\(String(address, radix: 16)) holds \(found), \(value) was written there")
    }
    // The probe that judges guards inaccessible must answer "accessible" where memory was written: a probe
    // that answered no to everything would pass every guard check. The words at both ends are marked when a
    // stack is adopted, so this holds for every live stack.
    for address in [model.layout.usableBottom, model.layout.top - 8] where model.marks[address] != nil {
        let accessible = probing("a written byte") { () throws(StackError) in try Probe.isAccessible(address) }
        check(accessible, "\(context()): 0x\(String(address, radix: 16)), written by this fuzzer, probes as inaccessible")
    }
}

/// The reservation of a released stack is no longer mapped.
func checkUnmapped(_ layout: StackLayout, _ context: @autoclosure () -> String) {
    for window in probeWindows(layout.base..<layout.top) {
        let unmapped = probing("mapping state") { () throws(StackError) in try Probe.isUnmapped(window) }
        check(unmapped, "\(context()): \(window) is still mapped after release")
    }
}

/// The resident pages of a released slab slot: none once it was discarded, or its whole region unmapped.
func residentAfterRelease(_ layout: StackLayout) -> Int {
    let firstPage = layout.usableBottom..<(layout.usableBottom + UInt(systemPageSize))
    let unmapped = probing("mapping state") { () throws(StackError) in try Probe.isUnmapped(firstPage) }
    if unmapped { return 0 }
    return probeWindows(layout.usableRange).reduce(0) { $0 + residentPages(in: $1).count }
}

/// A pool that scrubs on release leaves zeros where the stack's owner wrote (or the memory went back
/// to the pool's inner allocator and is unmapped).
func checkScrubbed(_ model: StackModel, _ context: @autoclosure () -> String) {
    for (address, value) in model.marks {
        let page = address & ~UInt(systemPageSize - 1)
        let unmapped = probing("mapping state") { () throws(StackError) in try Probe.isUnmapped(page..<(page + UInt(systemPageSize))) }
        if unmapped { continue }
        let found = UnsafePointer<UInt64>(bitPattern: address)!.pointee
        check(found == 0, "\(context()): 0x\(String(address, radix: 16)) still holds \(found) (written: \(value)) after a scrubbing release")
    }
}
