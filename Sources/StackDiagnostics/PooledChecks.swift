@_spi(Benchmarks) import GuardPages
import Glibc
import StackAllocators

/// `verify` for `PooledStackAllocator` over the mmap and slab allocators: each prefault strategy (pooled
/// stacks keep their guards and release does not unmap), reuse, scrub, and the hot watermark.
package enum PooledChecks {
    package static func run(into report: inout VerifyReport) {
        let request = StackRequest(usableSize: 256 << 10)
        let inners: [(String, () throws(StackError) -> any StackAllocator)] = [
            ("pool/mmap", { () throws(StackError) in try MmapStackAllocator() }),
            ("pool/slab", { () throws(StackError) in try SlabStackAllocator(.init(usableSize: 256 << 10)) }),
        ]
        for (name, makeInner) in inners {
            func pool(_ configure: (inout PooledStackAllocator.Configuration) -> Void = { _ in }) throws(StackError)
                -> PooledStackAllocator
            {
                var configuration = PooledStackAllocator.Configuration(stack: request)
                configure(&configuration)
                return try PooledStackAllocator(wrapping: try makeInner(), configuration)
            }
            let plain: PooledStackAllocator
            do {
                plain = try pool()
            } catch {
                report.add("create", name, false, "error: \(error)")
                continue
            }
            StackChecks.runLifecycles(plain, name: name, unmapsOnRelease: false, into: &report)
            report.check("reuse-keeps-guard", name) {
                let first = try plain.allocate(request)
                let base = first.descriptor.layout.base
                first.release()
                let again = try plain.allocate(request)
                let probe = try StackProbeReport(layout: again.descriptor.layout)
                return (again.descriptor.layout.base == base && probe.guardIsSound,
                        "same stack back: \(again.descriptor.layout.base == base); guard sound: \(probe.guardIsSound)")
            }
            report.check("scrub", name) {
                let scrubbing = try pool { $0.scrubOnRelease = true }
                let first = try scrubbing.allocate(request)
                memset(first.top - (64 << 10), 0xAB, 64 << 10)
                let layout = first.descriptor.layout
                first.release()
                let again = try scrubbing.allocate(request)
                // Only a scrub that ran proves anything: a pool whose scrub failed gives the stack back to the
                // inner allocator, and the next stack is fresh memory (at the same address, often) that reads
                // zero anyway.
                let reused = again.descriptor.layout == layout
                let zero = UnsafeRawBufferPointer(start: again.top - (64 << 10), count: 64 << 10).allSatisfy { $0 == 0 }
                let failures = scrubbing.stats.releaseFailures
                return (reused && zero && failures == 0,
                        "scrubs that failed: \(failures)\(failures > 0 ? " (the stack went back to the inner allocator)" : ""); "
                            + "the same range came back: \(reused); the 64 KiB the previous owner wrote read back zero: \(zero)")
            }
            report.check("hot-watermark", name) {
                let trimming = try pool { $0.hotWatermark = .init(bytes: 16 << 10, timing: .whenDeposited) }
                let stack = try trimming.allocate(request)
                memset(stack.usableBottom, 0xAB, stack.usableSize)
                let layout = stack.descriptor.layout
                stack.release()
                trimming.trim()
                let resident = try Probe.residentPages(in: layout.usableRange)
                return (resident * systemPageSize <= 16 << 10,
                        "\(resident) pages resident after trim (watermark 16 KiB of \(layout.sizes.usableSize >> 10) KiB)"
                            + StackChecks.discardCause)
            }
        }
    }
}
