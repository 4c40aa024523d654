/// AddressSanitizer's defaults for this target: nothing that maps memory behind the mapping census's
/// back (`checkMappingsRestored`).
///
/// - `quarantine_size_mb=0`: ASan keeps freed heap blocks in a quarantine (256 MiB by default) to catch
///   use after free; a large block (the pool's slot table, 600 KiB) is its own mapping and stays mapped
///   there after `free`, so every pool an input makes would look like a leaked mapping. Without the
///   quarantine, large blocks are unmapped when freed; buffer overflows are still caught.
/// - `detect_stack_use_after_return=0` and `use_sigaltstack=0`: every thread otherwise maps an 11 MiB
///   fake stack at its first instrumented frame and a 56 KiB alternate signal stack when it starts.
///   libFuzzer starts its RSS-limit thread just before the first inputs, so those mappings appeared
///   in the middle of whichever census was running, at a moment no input decides.
@_cdecl("__asan_default_options")
public func asanDefaultOptions() -> UnsafePointer<CChar> {
    UnsafeRawPointer(StaticString("quarantine_size_mb=0:detect_stack_use_after_return=0:use_sigaltstack=0").utf8Start)
        .assumingMemoryBound(to: CChar.self)
}
