// Fuzz target: page geometry and the prefault plan, against a model in Int128 arithmetic.
//
// Input: page size, usable size, guard size, base address and prefault depth, each chosen to sit on
// edges often (absurd, negative, overflowing). Checked:
// - StackSizes accepts exactly what the model accepts, rounds the same way, and rejects the rest with
//   the error the model names (page size, then usable size, then guard), never a trap;
// - StackLayout accepts exactly the non-null, page-aligned bases whose stack fits below 2^64, and
//   places the guard below the usable range;
// - PrefaultPlan: every planned page lies inside the usable range (so never in the guard), the pages
//   descend strictly from the top one page at a time, and they cover the requested depth (clamped to
//   the usable range) with less than one page to spare; a negative depth is an error.
import FuzzSupport
@_spi(Benchmarks) import GuardPages

/// The page sizes the plan is checked with: base pages, 64 KiB (aarch64 kernels), 2 MiB huge pages.
let pageSizes = [4096, 64 << 10, 2 << 20]

@_cdecl("LLVMFuzzerTestOneInput")
public func probePlanFuzzer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = ByteReader(data, size)
    let pageSize = input.byte() < 240 ? input.pick(pageSizes) : input.edgyInt(edges: absurdIntegers, pageSize: 4096)
    let usable = input.edgyInt(edges: absurdIntegers + [StackSizes.maximumUsableSize], pageSize: max(pageSize, 1))
    let guardSize = input.edgyInt(
        edges: absurdIntegers + [StackSizes.maximumGuardSize, 64 << 10],
        pageSize: systemPageSize)
    let base = decodeBase(&input)
    let depth: PrefaultDepth = input.bool() ? .all : .top(bytes: input.edgyInt(edges: absurdIntegers + [usable], pageSize: max(pageSize, 1)))

    guard let sizes = checkSizes(usable: usable, guard: guardSize, pageSize: pageSize),
        let layout = checkLayout(base: base, sizes: sizes)
    else { return 0 }
    checkPlan(layout: layout, depth: depth)
    return 0
}

/// Where the stack goes: anywhere in a 47-bit user address space, right below 2^64 (so that adding
/// the sizes overflows), null, or not page-aligned.
func decodeBase(_ input: inout ByteReader) -> UInt {
    let page = UInt(systemPageSize)
    switch input.byte() % 6 {
    case 0: return 0
    case 1: return UInt.max - UInt(input.int(in: 1...0xFFFF)) * page + 1  // page-aligned, near the end
    case 2: return UInt(input.integer(UInt64.self))  // anything, usually unaligned
    case 3: return UInt(1) << 47 - UInt(input.int(in: 1...0xFFFF)) * page
    default: return UInt(input.int(in: 1...(1 << 35))) * page
    }
}

/// `value` rounded up to a multiple of `alignment`, in arithmetic that cannot overflow.
func roundUp(_ value: Int128, to alignment: Int128) -> Int128 {
    (value + alignment - 1) / alignment * alignment
}

/// StackSizes against the model. Returns the sizes when both agree they are valid.
func checkSizes(usable: Int, guard guardSize: Int, pageSize: Int) -> StackSizes? {
    let result = Result { () throws(StackError) in try StackSizes(usableSize: usable, guardSize: guardSize, pageSize: pageSize) }
    let context = "StackSizes(usableSize: \(usable), guardSize: \(guardSize), pageSize: \(pageSize))"

    // The model: the first rule broken names the error.
    let expected: Result<(usable: Int128, guardSize: Int128), StackError>
    let roundedUsable = usable > 0 && pageSize > 0 ? roundUp(Int128(usable), to: Int128(pageSize)) : 0
    let roundedGuard = guardSize >= 0 ? roundUp(Int128(guardSize), to: Int128(systemPageSize)) : 0
    if pageSize < 4096 || pageSize.nonzeroBitCount != 1 {
        expected = .failure(.sizeError(.page, requested: pageSize))
    } else if usable <= 0 || roundedUsable > Int128(StackSizes.maximumUsableSize) {
        expected = .failure(.sizeError(.stack, requested: usable))
    } else if guardSize < 0 || roundedGuard > Int128(StackSizes.maximumGuardSize) {
        expected = .failure(.sizeError(.guardSize, requested: guardSize))
    } else {
        expected = .success((roundedUsable, roundedGuard))
    }

    switch (result, expected) {
    case (.success(let sizes), .success(let model)):
        check(Int128(sizes.usableSize) == model.usable, "\(context): usable \(sizes.usableSize), model \(model.usable)")
        check(Int128(sizes.guardSize) == model.guardSize, "\(context): guard \(sizes.guardSize), model \(model.guardSize)")
        check(sizes.pageSize == pageSize, "\(context): page size \(sizes.pageSize)")
        check(sizes.total == sizes.usableSize + sizes.guardSize, "\(context): total \(sizes.total)")
        return sizes
    case (.failure(let error), .failure(let model)):
        check(error.matches(model), "\(context): threw \(error), model expects \(model)")
        return nil
    case (.success(let sizes), .failure(let model)):
        finding("\(context) accepted (\(sizes)), model expects \(model)")
    case (.failure(let error), .success(let model)):
        finding("\(context) threw \(error), model accepts \(model)")
    }
}

/// StackLayout against the model: valid for a non-null, page-aligned base whose stack ends at or below 2^64.
func checkLayout(base: UInt, sizes: StackSizes) -> StackLayout? {
    let result = Result { () throws(StackError) in try StackLayout(base: base, sizes: sizes) }
    let end = UInt128(base) + UInt128(sizes.total)
    let valid = base != 0 && base % UInt(systemPageSize) == 0 && end <= UInt128(UInt.max)
    let context = "StackLayout(base: 0x\(String(base, radix: 16)), sizes: \(sizes))"
    switch result {
    case .success(let layout):
        check(valid, "\(context) accepted; the model rejects it")
        check(layout.guardRange == base..<(base + UInt(sizes.guardSize)), "\(context): guard \(layout.guardRange)")
        check(layout.usableRange.lowerBound == layout.guardRange.upperBound, "\(context): usable range does not start at the guard's end")
        check(UInt128(layout.top) == end, "\(context): top 0x\(String(layout.top, radix: 16))")
        check(layout.usableRange.count == sizes.usableSize, "\(context): usable range \(layout.usableRange)")
        return layout
    case .failure(let error):
        check(!valid, "\(context) threw \(error); the model accepts it")
        // A base off the page grid is named as the base; one whose stack runs past 2^64, as the size.
        let misplaced = base == 0 || base % UInt(systemPageSize) != 0
        let expected = misplaced ? "invalid StackLayout.base 0x\(String(base, radix: 16)):" : "invalid stack size"
        guard error.code == .invalidArgument, error.message.hasPrefix(expected) else {
            finding("\(context) threw \(error), expected a message starting \"\(expected)\"")
        }
        return nil
    }
}

/// Pages checked one by one; beyond that only the first ones and the plan's range (a 4 GiB stack of
/// 4 KiB pages is a million pages).
let maximumPagesWalked = 1 << 14

/// PrefaultPlan against the model.
func checkPlan(layout: StackLayout, depth: PrefaultDepth) {
    let context = "PrefaultPlan(\(layout), depth: \(depth))"
    let page = layout.sizes.pageSize
    let usablePages = layout.sizes.usableSize / page
    let expectedPages: Int
    switch depth {
    case .all:
        expectedPages = usablePages
    case .top(let bytes) where bytes < 0:
        let result = Result { () throws(StackError) in try PrefaultPlan(layout: layout, depth: depth) }
        guard case .failure(let error) = result, error.isSizeError(.stack, requested: bytes) else {
            finding("\(context): a negative depth gave \(result), expected an invalid stack size")
        }
        return
    case .top(let bytes):
        expectedPages = Int(min(roundUp(Int128(bytes), to: Int128(page)) / Int128(page), Int128(usablePages)))
    }
    let plan: PrefaultPlan
    do { plan = try PrefaultPlan(layout: layout, depth: depth) } catch { finding("\(context) threw \(error)") }

    check(plan.pageCount == expectedPages, "\(context): \(plan.pageCount) pages, model \(expectedPages)")
    let covered = Int128(plan.pageCount) * Int128(page)
    let wanted: Int128
    if case .top(let bytes) = depth { wanted = min(Int128(bytes), Int128(layout.sizes.usableSize)) } else { wanted = Int128(layout.sizes.usableSize) }
    check(covered >= wanted && covered < wanted + Int128(page), "\(context): covers \(covered) bytes for a depth of \(wanted)")
    check(plan.range.upperBound == layout.top, "\(context): range \(plan.range) does not end at the top")
    check(plan.range.lowerBound >= layout.usableBottom, "\(context): range \(plan.range) reaches below the usable bottom")
    check(UInt128(plan.range.count) == UInt128(covered), "\(context): range \(plan.range) is not \(covered) bytes")

    var previous: UInt? = nil
    var walked = 0
    for address in plan {
        check(layout.usableRange.contains(address), "\(context): page 0x\(String(address, radix: 16)) outside the usable range")
        check(!layout.guardRange.contains(address), "\(context): page 0x\(String(address, radix: 16)) in the guard")
        check(address + UInt(page) <= layout.top, "\(context): page 0x\(String(address, radix: 16)) runs past the top")
        if let previous {
            check(address < previous, "\(context): 0x\(String(address, radix: 16)) does not descend")
            check(previous - address <= UInt(page), "\(context): step \(previous - address) larger than a page")
        } else {
            check(address == layout.top - UInt(page), "\(context): first page 0x\(String(address, radix: 16)) is not just below the top")
        }
        previous = address
        walked += 1
        if walked == maximumPagesWalked { break }
    }
    check(walked == min(plan.pageCount, maximumPagesWalked), "\(context): walked \(walked) of \(plan.pageCount) pages")
    if plan.pageCount <= maximumPagesWalked, let previous {
        check(previous == plan.range.lowerBound, "\(context): last page 0x\(String(previous, radix: 16)) is not the range's bottom")
    }
}
