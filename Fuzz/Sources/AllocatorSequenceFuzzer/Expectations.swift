import FuzzSupport
@_spi(Benchmarks) import StackAllocators

/// What the model expects of one allocation request.
enum Expectation {
    /// A stack of these sizes, on this NUMA node.
    case stack(StackSizes, node: Int?)
    /// This error (`StackError.matches`).
    case error(StackError)
    /// An error that says the placement names no node with memory.
    case placementError
    /// `.capabilityMissing`: a placement other than the slab's or the pool's own.
    case otherPlacement
}

extension Subject {
    /// The model's answer to `request`, for `allocator` (made from this subject).
    func expectation(for request: StackRequest, allocator: any StackAllocator) -> Expectation {
        let asked = Result { () throws(StackError) in try StackSizes(usableSize: request.usableSize, guardSize: request.guardSize) }
        let prefaultError: StackError? =
            if request.prefault.isInvalid, case .top(let depth) = request.prefault.depth {
                .sizeError(.stack, requested: depth)
            } else {
                nil
            }
        switch self {
        case .mmap:
            switch asked {
            case .failure(let error): return .error(error)
            case .success(let sizes):
                if let placement = request.placement, !placement.isValid { return .placementError }
                if let prefaultError { return .error(prefaultError) }
                return .stack(sizes, node: request.placement?.homeNode)
            }
        case .slab(let configuration):
            let sizes = (allocator as! SlabStackAllocator).fixedSizes!
            let exact = request.usableSize == configuration.usableSize && request.guardSize == configuration.guardSize
            if let refusal = refusal(of: request, asked: asked, sizes: sizes, placement: configuration.placement, exact: exact) {
                return refusal
            }
            if let prefaultError { return .error(prefaultError) }
            return .stack(sizes, node: configuration.placement?.homeNode)
        case .pool(let configuration, _):
            let sizes = (allocator as! PooledStackAllocator).fixedSizes!
            let exact =
                request.usableSize == configuration.stack.usableSize && request.guardSize == configuration.stack.guardSize
                && request.placement == configuration.stack.placement
            if let refusal = refusal(of: request, asked: asked, sizes: sizes, placement: configuration.stack.placement, exact: exact) {
                return refusal
            }
            if let prefaultError { return .error(prefaultError) }
            return .stack(sizes, node: configuration.stack.placement?.homeNode)
        }
    }

    /// Why a slab or pool of `sizes` placed by `placement` refuses `request`, or nil: another placement,
    /// then (unless the request repeats the configuration exactly) invalid sizes, then sizes that do not fit.
    private func refusal(
        of request: StackRequest, asked: Result<StackSizes, StackError>, sizes: StackSizes, placement: NUMAPlacement?,
        exact: Bool
    ) -> Expectation? {
        if let wanted = request.placement, wanted != placement { return .otherPlacement }
        guard !exact else { return nil }
        switch asked {
        case .failure(let error): return .error(error)
        case .success(let asked):
            if asked.usableSize > sizes.usableSize { return .error(.sizeError(.stack, requested: request.usableSize)) }
            if asked.guardSize > sizes.guardSize { return .error(.sizeError(.guardSize, requested: request.guardSize)) }
            return nil
        }
    }
}
