@testable import fiberstacks_bench
import Testing

/// The capacity targets are medians, like every other target: of several runs, not of one.
@Suite("Capacity runs")
struct CapacityRunsTests {
    @Test("The capacity figure is measured three times and its targets read the medians")
    func threeRuns() throws {
        let recorder = BenchRecorder(
            scale: BenchScale(reps: 15, warmups: 2, quick: false), capacityLimit: 2_000, capacitySeconds: 20)
        try CapacityBenchmarks.run(recorder)
        let figure = try #require(recorder.results.first { $0.name == "slab_guarded_stacks" })
        let extra = try #require(figure.extra)
        #expect(figure.reps == 3 && extra["runs"] == 3, "\(figure)")
        #expect(extra["create_s_per_million"] == figure.median)
        let create = try #require(extra["create_s_per_million"])
        let release = try #require(extra["release_s_per_million"])
        #expect(try #require(extra["create_s_per_million_min"]) <= create)
        #expect(create <= (try #require(extra["create_s_per_million_max"])))
        #expect(try #require(extra["release_s_per_million_min"]) <= release)
        #expect(release <= (try #require(extra["release_s_per_million_max"])))
        #expect(extra["stacks"] == 2_000 && extra["stopped_by_error"] == 0)
    }
}
