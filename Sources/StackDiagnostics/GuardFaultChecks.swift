import Glibc
@_spi(Benchmarks) import GuardPages
@_spi(Benchmarks) import StackAllocators

/// `verify` for guards that really fault, for every allocator kind: a child process writes one byte
/// at a random depth into the guard of a labelled stack, and must die by SIGSEGV with the overflow
/// handler's diagnostic naming that stack and that exact distance below its usable bottom.
package enum GuardFaultChecks {
    /// Guard bytes of every stack the children make.
    package static let guardSize = 64 << 10

    package static func run(into report: inout VerifyReport) {
        let lightweight = GuardInstaller.lightweightGuardsSupported
        for allocator in ["mmap", "slab"] {
            for mode in [GuardMode.lightweight, .protNone] {
                let name = "\(allocator)/\(mode)"
                if mode == .lightweight && !lightweight {
                    report.skip("guard-fault", name, lacking: .lightweightGuards,
                                GuardInstaller.lightweightGuards.missing ?? "")
                    continue
                }
                fault(name, ["--allocator", allocator, "--guard-mode", mode.rawValue], into: &report)
            }
        }
        fault("pool/mmap", ["--allocator", "pool"], into: &report)
        let anonymous = HugePageChecks.defaultHugeTLBMissing()
        let transparent = HugePageChecks.transparentMissing()
        for (packing, allocator) in [("", "huge"), ("packed-", "huge-packed")] {
            if let anonymous {
                report.skip("guard-fault", "huge/\(packing)anonymous", lacking: .hugetlbAnonymous, anonymous)
            } else {
                fault("huge/\(packing)anonymous", ["--allocator", allocator, "--huge-backing", "anonymous"], into: &report)
            }
            if let transparent {
                report.skip("guard-fault", "huge/\(packing)transparent", lacking: .thp, transparent)
            } else {
                fault("huge/\(packing)transparent", ["--allocator", allocator, "--huge-backing", "transparent"], into: &report)
            }
        }
    }

    private static func fault(_ name: String, _ arguments: [String], into report: inout VerifyReport) {
        report.check("guard-fault", name, timeLimit: SelfChild.timeLimit + 10) {
            let label = "verify-\(getpid())-\(name)"
            return try SelfChild.expectGuardFault(
                arguments, label: label, offset: Int.random(in: 1...guardSize), guardSize: guardSize)
        }
    }
}
