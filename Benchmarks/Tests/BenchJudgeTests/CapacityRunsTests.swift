import CPeers
@testable import fiberstacks_bench
@_spi(Benchmarks) import GuardPages
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

    @Test("Each run is followed by C doing the slab's syscalls for as many stacks, and both capacity ratios are judged")
    func referenceInC() throws {
        let recorder = BenchRecorder(
            scale: BenchScale(reps: 15, warmups: 2, quick: false), capacityLimit: 2_000, capacitySeconds: 20)
        try CapacityBenchmarks.run(recorder)
        guard GuardInstaller.lightweightGuardsSupported else {
            #expect(recorder.skipped.contains { $0.name == "c_slab_syscalls" })
            return
        }
        let peer = try #require(recorder.peerResults.first { $0.name == "c_slab_syscalls" })
        #expect(peer.reps == 3 && peer.opsPerRep == 2_000 && peer.extra?["runs"] == 3, "\(peer)")
        let ratios = RatioPlan.ratios(ours: recorder.results, peers: recorder.peerResults)
        for id in ["capacity_create_vs_c", "capacity_release_vs_c"] {
            let ratio = try #require(ratios.first { $0.id == id })
            #expect(ratio.status != .notEvaluated && (ratio.ratio ?? 0) > 0, "\(ratio)")
        }
    }

    @Test(
        "The C reference unmaps what it mapped when a syscall fails",
        .enabled(if: GuardInstaller.lightweightGuardsSupported, "needs MADV_GUARD_INSTALL (Linux >= 6.13)"))
    func referenceCleansUp() async {
        // In a process of its own: the other tests of this process map and unmap meanwhile.
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let before = try MapCount.current()
            var release: Int64 = 0
            // A guard that is not a whole number of pages: the first process_madvise fails with EINVAL.
            let result = fs_peer_capacity(64, 64 << 10, 100, 16, 8, 8, StackLayout.mappingFlags, &release)
            precondition(result == -1, "the peer returned \(result)")
            precondition(String(cString: fs_peer_error()).contains("process_madvise"), String(cString: fs_peer_error()))
            let after = try MapCount.current()
            precondition(after == before, "\(after) map lines after the failure, \(before) before")
        }
    }
}
