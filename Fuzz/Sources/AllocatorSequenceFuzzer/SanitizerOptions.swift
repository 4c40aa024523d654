/// AddressSanitizer's defaults for this target: no quarantine.
///
/// ASan keeps freed heap blocks in a quarantine (256 MiB by default) to catch use after free; a large
/// block (the pool's slot table, 600 KiB) is its own mapping and stays mapped there after `free`, so
/// every pool an input makes would look like a leaked mapping to `checkMappingsRestored`. Without the
/// quarantine, large blocks are unmapped when freed; buffer overflows are still caught.
@_cdecl("__asan_default_options")
public func asanDefaultOptions() -> UnsafePointer<CChar> {
    UnsafeRawPointer(StaticString("quarantine_size_mb=0").utf8Start).assumingMemoryBound(to: CChar.self)
}
