import Logging

extension StackStatsRecorder {
    /// Counts and logs a release that named no live stack of `allocator`: a stack released twice, or a
    /// `Stack` built from a descriptor the allocator did not hand out. Nothing was freed.
    func recordRefusedRelease(_ descriptor: StackDescriptor, allocator: String, logger: Logger) {
        recordRefusedRelease()
        logger.error(
            "release refused: the stack is not live in this allocator (released twice, or never handed out by it); nothing was freed",
            metadata: ["stack": "\(descriptor)", "tag": "\(descriptor.tag)", "allocator": "\(allocator)"])
    }
}
