// swift-tools-version: 6.2
// The libFuzzer targets of FiberStacks: one executable per target, each exporting
// `LLVMFuzzerTestOneInput`. Build and run them with `scripts/fuzz` (see docs/fuzzing.md); a plain
// `swift build` without `--sanitize=fuzzer` cannot link them, because libFuzzer provides `main`.
import PackageDescription

/// SwiftPM names a path dependency after its directory, so the main package is known by the name of the
/// checkout it lives in (`FiberStacks`, `main`, a worktree's name): take it from this manifest's path.
let fiberStacks = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "FiberStacks")

let package = Package(
    name: "FiberStacksFuzz",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C helpers: what must run uninstrumented (the mapping census, the recursion) and process control.
        .target(name: "CFuzzSupport"),
        // Input decoding, checks that report findings, and process-wide measurements shared by the targets.
        .target(
            name: "FuzzSupport",
            dependencies: ["CFuzzSupport", .product(name: "GuardPages", package: fiberStacks)]
        ),
        // StackSizes, StackLayout and PrefaultPlan against an Int128 model: pure arithmetic.
        .executableTarget(
            name: "ProbePlanFuzzer",
            dependencies: ["FuzzSupport", .product(name: "GuardPages", package: fiberStacks)]
        ),
        // Random allocate / prefault / probe / touch / release sequences over the allocators.
        .executableTarget(
            name: "AllocatorSequenceFuzzer",
            dependencies: [
                "FuzzSupport",
                .product(name: "StackAllocators", package: fiberStacks),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // GuardRegistry against a dictionary model: overlapping, adjacent and colliding stacks.
        .executableTarget(
            name: "GuardRegistryFuzzer",
            dependencies: ["FuzzSupport", .product(name: "GuardPages", package: fiberStacks), .product(name: "OverflowDetection", package: fiberStacks)]
        ),
        // Real guards, really hit: recursion on a guarded stack in a forked child, per input.
        .executableTarget(
            name: "GuardProbeFuzzer",
            dependencies: ["FuzzSupport", "CFuzzSupport", .product(name: "StackAllocators", package: fiberStacks)]
        ),
    ],
    swiftLanguageModes: [.v6]
)
