@testable import fiberstacks_bench
import Testing

/// How `bench` judges a figure against its bar: met at or below it, rounding forgiven, nothing more.
@Suite("Targets judged")
struct TargetJudgeTests {
    /// One of our TLB figures with the given median.
    static func tlb(_ name: String, median: Double) -> BenchResult {
        BenchResult(section: .tlb, name: name, params: ["stride": 4096], samples: [median], opsPerRep: 1)
    }

    static func judged(hugetlb: Double, small: Double) throws -> BenchRatio {
        let ratios = RatioPlan.ratios(
            ours: [tlb("hugetlb_packed", median: hugetlb), tlb("small_packed", median: small)], peers: [])
        return try #require(ratios.first { $0.id == "tlb_hugetlb_vs_small_packed" })
    }

    @Test("A ratio exactly at its bar meets it, though the division rounds one unit above the bar")
    func ratioAtTheBar() throws {
        // 10 / 13 rounds to one unit above 1 / 1.3: 10 ns against 13 ns is exactly the 1.3x asked for.
        #expect(10.0 / 13.0 > 1 / 1.3)
        let ratio = try Self.judged(hugetlb: 10, small: 13)
        #expect(ratio.status == .met && ratio.met, "\(ratio)")
    }

    @Test("A ratio measurably past its bar misses; one below meets", arguments: [
        (10.0, 12.99, TargetStatus.missed), (10.0, 12.9999, .missed), (10.0, 13.01, .met), (1, 100, .met),
    ])
    func ratioAroundTheBar(hugetlb: Double, small: Double, expected: TargetStatus) throws {
        let ratio = try Self.judged(hugetlb: hugetlb, small: small)
        #expect(ratio.status == expected && ratio.met == (expected == .met), "\(ratio)")
    }

    @Test("A ratio with a figure this run did not measure is not evaluated, and not met")
    func ratioNotMeasured() throws {
        let ratios = RatioPlan.ratios(ours: [Self.tlb("hugetlb_packed", median: 10)], peers: [])
        let ratio = try #require(ratios.first { $0.id == "tlb_hugetlb_vs_small_packed" })
        #expect(ratio.status == .notEvaluated && !ratio.met && ratio.ratio == nil)
    }

    @Test("A bound is met at its value and missed just past it", arguments: [
        (1.0, 1.0, TargetStatus.met), (1.0 + 1e-12, 1.0, .met), (1.0001, 1.0, .missed), (0.7, 1.0, .met),
    ])
    func bound(figure: Double, bound: Double, expected: TargetStatus) {
        #expect(TargetStatus(figure, atMost: bound) == expected)
    }
}
