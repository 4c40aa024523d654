// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "FiberStacks",
    products: [
        .library(name: "GuardPages", targets: ["GuardPages"]),
        .library(name: "OverflowDetection", targets: ["OverflowDetection"]),
        .library(name: "StackAllocators", targets: ["StackAllocators"]),
        .library(name: "FiberScheduler", targets: ["FiberScheduler"]),
        // The checks behind `fiberstacks verify` and `doctor`, for tools that run them in-process.
        .library(name: "StackDiagnostics", targets: ["StackDiagnostics"]),
        .executable(name: "fiberstacks", targets: ["fiberstacks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // C shims: kernel constants and functions that Swift's Glibc module hides.
        .target(name: "CStackSupport"),
        .systemLibrary(name: "CNuma", pkgConfig: "numa", providers: [.apt(["libnuma-dev"])]),
        .systemLibrary(name: "CHugeTLBFS", providers: [.apt(["libhugetlbfs-dev"])]),
        // The fiber context switch (assembly) and the sanitizer-aware switch around it.
        .target(name: "CFiberContext"),

        // Page geometry, guards, prefault, non-faulting probes. Depends on nothing of ours but the shims.
        .target(
            name: "GuardPages",
            dependencies: [
                "CStackSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The guard registry, the SIGSEGV handler that names the fiber, alternate signal stacks, canaries,
        // high-water marks, the frame audit (the largest stack frames of loaded code, against the guard).
        .target(
            name: "OverflowDetection",
            dependencies: [
                "GuardPages",
                "CStackSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The StackAllocator protocol, Stack, and the allocators.
        .target(
            name: "StackAllocators",
            dependencies: [
                "GuardPages",
                "OverflowDetection",
                "CNuma",
                "CHugeTLBFS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Fibers, workers, pools, jobs and counters on top of any StackAllocator.
        .target(
            name: "FiberScheduler",
            dependencies: [
                "StackAllocators",
                "CFiberContext",
                "CStackSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The checks behind `fiberstacks verify` and `doctor`, callable in-process by tests and tools:
        // machine capabilities, child processes, the check reports.
        .target(
            name: "StackDiagnostics",
            dependencies: [
                "StackAllocators",
                "FiberScheduler",
                "CNuma",
                "CStackSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "fiberstacks",
            dependencies: [
                "StackDiagnostics",
                "StackAllocators",
                "CNuma",
                "FiberScheduler",
                "CFiberContext",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .testTarget(
            name: "GuardPagesTests",
            dependencies: [
                "GuardPages", "OverflowDetection", "StackDiagnostics", "CFrameFixtures", "CSandbox", "CFaultTrap", "StackTestSupport",
            ]),
        // Functions with frames of known size (C and assembly) for the frame audit's tests.
        .target(name: "CFrameFixtures", path: "Tests/CFrameFixtures"),
        // A one-shot trap on a page that reads back what was resident when it was first touched.
        .target(name: "CFaultTrap", path: "Tests/CFaultTrap"),
        .testTarget(
            name: "StackAllocatorsTests",
            dependencies: [
                "StackAllocators", .product(name: "MetricsTestKit", package: "swift-metrics"), "StackTestSupport", "CSandbox",
            ]
        ),
        // Implements allocators as a user would, with public API only (no @testable; Examples/CustomAllocator
        // builds the same allocators outside the package). The checks probe the kernel through the SPI.
        .testTarget(name: "CustomAllocatorTests", dependencies: ["StackAllocators", "FiberScheduler", "StackTestSupport", "CSandbox"]),
        // A custom allocator and helpers shared by the test targets, written with public API only.
        .target(name: "StackTestSupport", dependencies: ["StackAllocators", "StackDiagnostics", "CHeapProbe", "CSandbox"], path: "Tests/StackTestSupport"),
        .testTarget(name: "fiberstacksTests", dependencies: ["fiberstacks", "StackDiagnostics", "CSandbox", "StackTestSupport"]),
        // NUMA placement on this host, and (through scripts/numa-vm) in multi-node virtual machines.
        .testTarget(name: "NUMATests", dependencies: ["StackAllocators", "StackDiagnostics", "fiberstacks", "StackTestSupport"]),
        .testTarget(
            name: "FiberSchedulerTests",
            dependencies: ["FiberScheduler", "CFiberContext", "StackTestSupport", "CJumpFixtures", "CHeapProbe"]),
        // C frames that skip guards without touching them, for the overflow tests.
        .target(name: "CJumpFixtures", path: "Tests/CJumpFixtures"),
        .target(name: "CHeapProbe", path: "Tests/CHeapProbe"),
        // Seccomp filters that refuse madvise or another syscall, as a container's profile can, or the guard
        // advice, as a kernel older than 6.13 does.
        .target(name: "CSandbox", path: "Tests/CSandbox"),
    ],
    swiftLanguageModes: [.v6]
)
