import Glibc

/// A sanitizer runtime linked into this process. Its allocator and shadow memory map lines and hold
/// resident memory of their own, and it takes SIGSEGV for itself: process-wide counts then no longer
/// belong to the stacks alone, and a foreign fault ends in the sanitizer's report.
package enum Sanitizer: String, Sendable {
    case address = "AddressSanitizer"
    case thread = "ThreadSanitizer"

    /// The sanitizer whose runtime this process loaded (its init function is visible), or nil.
    package static let loaded: Sanitizer? =
        // nil: RTLD_DEFAULT, every loaded object.
        dlsym(nil, "__asan_init") != nil ? .address : dlsym(nil, "__tsan_init") != nil ? .thread : nil

    /// Throws `CheckSkipped` for `.processAccounting` when a sanitizer is loaded: for checks that compare
    /// the whole process's map lines or resident memory before and after.
    package static func requireProcessAccounting() throws(CheckSkipped) {
        guard let loaded else { return }
        throw CheckSkipped(
            .processAccounting,
            "\(loaded.rawValue) maps and keeps memory of its own, so the process's map lines and RSS are not the "
                + "stacks' alone; run verify from a build without --sanitize")
    }
}
