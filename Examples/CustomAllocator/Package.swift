// swift-tools-version: 6.2
// A program outside FiberStacks that plugs its own allocators into the scheduler with public API only:
// the custom allocator of README.md ("Plugging in your own allocator") and a counting decorator.
// Build and run: swift run --package-path Examples/CustomAllocator (or scripts/check-example).
import PackageDescription

/// SwiftPM names a path dependency after its directory, so the main package is known by the name of the
/// checkout it lives in (`FiberStacks`, `main`, a worktree's name): take it from this manifest's path.
let fiberStacks = String(Context.packageDirectory.split(separator: "/").dropLast(2).last ?? "FiberStacks")

let package = Package(
    name: "CustomAllocatorExample",
    dependencies: [
        .package(path: "../.."),
    ],
    targets: [
        // GuardedMmapAllocator.swift and TrackingAllocator.swift are the files Tests/CustomAllocatorTests
        // tests, linked here so the same code is built outside the package, where only public API is seen.
        .executableTarget(
            name: "CustomAllocatorExample",
            dependencies: [.product(name: "FiberScheduler", package: fiberStacks)]
        ),
    ],
    swiftLanguageModes: [.v6]
)
