// swift-tools-version: 6.2
// The benchmarks of FiberStacks: `fiberstacks-bench` measures our figures and the peers' (Boost.Context,
// Boost.Fiber, glibc, plain C doing our syscalls, Swift concurrency, Dispatch) in one process, each
// figure alternating with the peers it is compared with. `fiberstacks bench` runs it; see
// docs/benchmarks.md. Build: swift build -c release --package-path Benchmarks
import PackageDescription

/// SwiftPM names a path dependency after its directory, so the main package is known by the name of the
/// checkout it lives in (`FiberStacks`, `main`, a worktree's name): take it from this manifest's path.
let fiberStacks = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "FiberStacks")

let package = Package(
    name: "FiberStacksBenchmarks",
    products: [
        .executable(name: "fiberstacks-bench", targets: ["fiberstacks-bench"]),
    ],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // The C and C++ peers, one repetition per call (Debian: libboost-context-dev, libboost-fiber-dev).
        .target(
            name: "CPeers",
            cxxSettings: [.define("BOOST_ALL_NO_LIB")],
            linkerSettings: [.linkedLibrary("boost_context"), .linkedLibrary("boost_fiber"), .linkedLibrary("pthread")]
        ),
        .executableTarget(
            name: "fiberstacks-bench",
            dependencies: [
                "CPeers",
                .product(name: "GuardPages", package: fiberStacks),
                .product(name: "OverflowDetection", package: fiberStacks),
                .product(name: "StackAllocators", package: fiberStacks),
                .product(name: "FiberScheduler", package: fiberStacks),
                .product(name: "StackDiagnostics", package: fiberStacks),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // How targets are judged: `swift test --package-path Benchmarks`.
        .testTarget(name: "BenchJudgeTests", dependencies: ["fiberstacks-bench"]),
    ],
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)
