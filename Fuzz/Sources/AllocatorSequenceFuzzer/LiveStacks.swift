import StackAllocators

/// What the model knows about one live stack.
struct StackModel {
    /// Its descriptor, as allocated.
    let descriptor: StackDescriptor
    /// Values written into the usable range, by address: they must read back until release.
    var marks: [UInt: UInt64] = [:]
    /// System pages of the usable range known to be resident (prefaulted or written).
    var residentPages: Set<UInt> = []
    /// System pages that may be resident without having been written (read, which may map the zero page).
    var maybeResidentPages: Set<UInt> = []

    var layout: StackLayout { descriptor.layout }
}

/// The live stacks of one input and their models, at most `capacity` of them.
///
/// `Array` cannot hold `~Copyable` values, so the stacks live in raw storage (as docs/architecture.md
/// says code that keeps many stacks must); the models in a parallel array.
final class LiveStacks {
    /// The most stacks an input keeps at once.
    static let capacity = 64

    private let stacks = UnsafeMutablePointer<Stack>.allocate(capacity: LiveStacks.capacity)
    /// The models, index for index with the stacks.
    private(set) var models: [StackModel] = []

    var count: Int { models.count }
    var isFull: Bool { count == Self.capacity }

    /// Keeps `stack`, described by `model`.
    func append(_ stack: consuming Stack, model: StackModel) {
        precondition(!isFull)
        (stacks + count).initialize(to: stack)
        models.append(model)
    }

    /// Updates the model at `index`.
    func update(_ index: Int, _ body: (inout StackModel) -> Void) {
        body(&models[index])
    }

    /// Takes the stack at `index` out and forgets its model (the last one takes its place).
    func remove(at index: Int) -> Stack {
        let stack = (stacks + index).move()
        let last = count - 1
        if index != last { (stacks + index).moveInitialize(from: stacks + last, count: 1) }
        models[index] = models[last]
        models.removeLast()
        return stack
    }

    deinit {
        stacks.deinitialize(count: count)
        stacks.deallocate()
    }
}
