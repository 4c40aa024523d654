@_spi(Benchmarks) import GuardPages
import Logging
import Testing

@Suite("perf_event_open counters")
struct PerfCounterTests {
    static let pageFaultsOffered = PerfCounter.unavailability(of: .pageFaults) == nil

    @Test(
        "The page-fault counter counts first touches, and not pages the kernel populates",
        .enabled(if: pageFaultsOffered, "needs perf_event_open for software events (kernel.perf_event_paranoid <= 2, allowed by seccomp)"))
    func pageFaults() throws {
        let pages = 64
        let touched = try ScratchStack(usable: pages * systemPageSize)
        let populated = try ScratchStack(usable: pages * systemPageSize)
        let counter = try PerfCounter(.pageFaults)
        #expect(counter.event == .pageFaults)
        let start = try counter.read()
        try Prefault.apply(PrefaultPolicy(.touch), to: touched.layout, logger: Logger(label: "test"))
        let afterTouch = try counter.read()
        #expect(afterTouch - start >= UInt64(pages), "touching \(pages) fresh pages counted \(afterTouch - start) faults")
        try Prefault.apply(PrefaultPolicy(.populate), to: populated.layout, logger: Logger(label: "test"))
        let afterPopulate = try counter.read()
        #expect(try Probe.residentPages(in: populated.layout.usableRange) == pages)
        #expect(afterPopulate - afterTouch < UInt64(pages / 2), "MADV_POPULATE_WRITE faults in kernel mode, uncounted")
    }

    @Test("Every event either opens or names the cause and the fix", arguments: PerfCounter.Event.allCases)
    func availability(_ event: PerfCounter.Event) throws {
        guard let error = PerfCounter.unavailability(of: event) else {
            let counter = try PerfCounter(event)
            _ = try counter.read()
            return
        }
        #expect(error.event == event.rawValue)
        let description = error.description
        #expect(description.contains(event.rawValue) && description.contains(";"), "\(description)")
    }
}
