/// The one shape of stack an allocator hands out (a slab, a pool): requests that fit it are served with
/// it, anything else is refused with the error that says what to make instead.
struct StackShape {
    /// Validated sizes of every stack.
    let sizes: StackSizes
    /// What backs every stack.
    let pages: PageKind
    /// Where every stack is placed (nil: first touch).
    let placement: NUMAPlacement?
    /// The allocator, as errors name it ("slab", "pool").
    let owner: String

    /// Throws unless `request` fits: the same pages and placement (or none asked), and no more usable
    /// bytes or guard than the shape has.
    func accept(_ request: StackRequest) throws(StackError) {
        guard request.pages == pages else {
            throw .invalidRequest(
                "\(request.pages) pages from a \(owner) of \(pages)-page stacks",
                fix: "make a \(owner) of that page kind (HugePageStackAllocator for huge pages)")
        }
        if let asked = request.placement, asked != placement {
            throw .invalidRequest(
                "placement \(asked) from a \(owner) placed \(placement.map { "\($0)" } ?? "by first touch")",
                fix: "make one \(owner) per placement")
        }
        let asked = try StackSizes(usableSize: request.usableSize, guardSize: request.guardSize)
        guard asked.usableSize <= sizes.usableSize else {
            throw .invalidSize(
                requested: request.usableSize,
                reason: "this \(owner) holds stacks of \(sizes.usableSize) usable bytes; make a \(owner) of the larger size")
        }
        guard asked.guardSize <= sizes.guardSize else {
            throw .invalidGuard(
                requested: request.guardSize,
                reason: "this \(owner)'s stacks have \(sizes.guardSize)-byte guards; make a \(owner) with the larger guard")
        }
    }
}
