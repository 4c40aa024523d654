import CStackSupport
import Foundation
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackAllocators

/// The machine a report was measured on, and how busy it was.
struct BenchMachine: Codable {
    let cpu: String
    let kernel: String
    let cores: Int
    /// "KVM guest" from the CPUID hypervisor leaf; "none reported" on bare metal.
    let virtualization: String
    let memoryBytes: Int
    let transparentHugePages: String
    let hugePagesFree: Int
    let lightweightGuards: Bool
    /// "release" or "debug": numbers from a debug build mean little.
    let build: String
    /// /proc/loadavg's 1, 5 and 15 minute averages when the run began: other work on the same cores.
    let loadAverage: [Double]

    enum CodingKeys: String, CodingKey {
        case cpu, kernel, cores, virtualization, build
        case memoryBytes = "memory_bytes"
        case transparentHugePages = "transparent_huge_pages"
        case hugePagesFree = "huge_pages_free"
        case lightweightGuards = "lightweight_guards"
        case loadAverage = "load_average"
    }

    static func current() -> BenchMachine {
        let cpuinfo = (try? SystemFile.read("/proc/cpuinfo")) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown"
        return BenchMachine(
            cpu: model, kernel: kernelRelease, cores: ProcessInfo.processInfo.activeProcessorCount,
            virtualization: hypervisor(), memoryBytes: Int(ProcessInfo.processInfo.physicalMemory),
            transparentHugePages: HugePageSystem.transparentHugePageMode() ?? "absent",
            hugePagesFree: HugePageSystem.hugePagePool(pageSize: HugePageSystem.defaultHugePageSize())?.free ?? 0,
            lightweightGuards: GuardInstaller.lightweightGuardsSupported,
            build: buildConfiguration(), loadAverage: loadAverage())
    }

    /// "debug" where assertions run (an unoptimized build), "release" otherwise.
    static func buildConfiguration() -> String {
        var debug = false
        assert({ debug = true; return true }())
        return debug ? "debug" : "release"
    }

    /// The hypervisor the CPU reports, by its CPUID signature.
    static func hypervisor() -> String {
        var vendor = [CChar](repeating: 0, count: 13)
        guard fs_hypervisor_vendor(&vendor) == 1 else { return "none reported (bare metal, or no CPUID)" }
        let signature = String(decoding: vendor.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let names = ["KVMKVMKVM": "KVM", "Microsoft Hv": "Hyper-V", "VMwareVMware": "VMware", "XenVMMXenVMM": "Xen",
                     "TCGTCGTCGTCG": "QEMU TCG", "bhyve bhyve ": "bhyve"]
        return "\(names[signature] ?? signature) guest"
    }

    /// The 1, 5 and 15 minute load averages (empty if /proc/loadavg cannot be read).
    static func loadAverage() -> [Double] {
        guard let text = try? SystemFile.read("/proc/loadavg") else { return [] }
        return text.split(separator: " ").prefix(3).compactMap { Double($0) }
    }

    /// The current time, UTC, to the minute: "2026-11-30 08:40".
    static func utcNow() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min))
    }
}
