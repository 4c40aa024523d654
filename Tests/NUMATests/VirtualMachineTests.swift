import Foundation
import GuardPages
import StackAllocators
@_spi(Benchmarks) import StackDiagnostics
import StackTestSupport
import Testing

/// Runs `fiberstacks numa-check --json --disposable-machine` inside scripts/numa-vm guests with several NUMA nodes and
/// asserts on its results. Each boot takes 10-40 s under TCG (qemu without KVM).
@Suite("NUMA placement in multi-node VMs (scripts/numa-vm)", .serialized)
struct VirtualMachineTests {
    /// Two nodes with CPUs and memory; node 1 small enough that the preferred-spill check stays quick.
    static let twoNodes = "0:cpus=0,mem=\(576 + sanitizerMiB);1:cpus=1,mem=256"
    /// Node 2 has CPUs 2-3 and no memory.
    static let memoryless = "0:cpus=0,mem=\(256 + sanitizerMiB);1:cpus=1,mem=256;2:cpus=2-3,mem=0"
    /// What node 0 needs on top under AddressSanitizer: the guest holds the instrumented binary and its
    /// runtime (about 100 MiB, in the initramfs) and the shadow memory and quarantine it fills. Without
    /// it the guest's OOM killer ends `numa-check` (measured: killed at 448 MiB, passing at 576; with
    /// 768 on top, killed once in the two-node guest, whose preferred-spill check fills node 1 into node 0).
    static let sanitizerMiB = addressSanitizerActive ? 1280 : 0

    @Test(
        "Two nodes: bound stacks have every page on their node whichever node prefaults them",
        .enabled(if: VM.missing == nil, VM.reason))
    func twoNodes() throws {
        let report = try VM.run(nodes: Self.twoNodes)
        let topology = try #require(report.topology)
        #expect(topology.memoryNodes == [0, 1])
        #expect(topology.nodes.map(\.cpus) == [[0], [1]])
        for target in [0, 1] {
            let remote = 1 - target
            for strategy in ["populate", "touch"] {
                let counts = try report.passed("bind/node\(target)/\(strategy)-from-node\(remote)")
                #expect(counts["pages"] == 64 && counts["present"] == 64 && counts["node\(target)"] == 64, "\(counts)")
            }
            // Control: without a placement the same prefault lands on the prefaulting CPU's node.
            #expect(try report.passed("first-touch/node\(remote)")["node\(remote)"] == 64)
            #expect(try report.passed("preferred/node\(target)")["node\(target)"] == 64)
            #expect(try report.passed("pin/node\(target)")["node"] == target)
        }
        // Preferred spills to the other node when its own is full; verify reports the spill.
        let spill = try report.passed("preferred-spill/node1")
        #expect(
            (spill["node1"] ?? 0) > 0 && (spill["node0"] ?? 0) > 0 && spill["present"] == spill["pages"], "\(spill)")
        // Interleave: 64 pages over 2 nodes, 32 each.
        let interleave = try report.passed("interleave")
        #expect(interleave["node0"] == 32 && interleave["node1"] == 32, "\(interleave)")
        // Existing pages on node 0, then bound to node 1.
        #expect(try report.passed("existing-pages/move")["node1"] == 64)
        let strict = try report.passed("existing-pages/strict")
        #expect(strict["failed"] == 1 && strict["node0"] == 64)
        let leave = try report.passed("existing-pages/leave")
        #expect(leave["failed"] == 0 && leave["node0"] == 64)
        #expect(try report.passed("reject/out-of-range/2").isEmpty)
        // The guest kernel (Debian 6.1) lacks MADV_GUARD_INSTALL: automatic guards fall back to mprotect.
        let guards = try report.passed("guard/automatic")
        #expect(guards["guardPresent"] == 0 && (guards["guardPages"] ?? 0) > 0)
        #expect(try report.passed("guard/mprotect")["lightweight"] == 0)
        // Huge-page stacks bound to a node with an empty pool: hugePagesExhausted naming that node's pool
        // file, at allocation, not SIGBUS; bound to the node with pages, they land there.
        let huge = try report.passed("huge/empty-node-pool")
        #expect(huge["namesNode"] == 1 && huge["freeOnEmptyNode"] == 0 && huge["onFullNode"] == 1, "\(huge)")
        // The scheduler: each worker's stacks, bound to its node and grown while idle, are all there.
        let scheduler = try report.passed("scheduler/worker-node-stacks")
        #expect(scheduler["grown"] == 6 && scheduler["misplaced"] == 0, "\(scheduler)")
        report.expectAllPassed()
    }

    @Test(
        "A memoryless node: binding to it is refused with its error; its CPUs can prefault bound stacks",
        .enabled(if: VM.missing == nil, VM.reason))
    func memorylessNode() throws {
        let report = try VM.run(nodes: Self.memoryless)
        let topology = try #require(report.topology)
        #expect(topology.memoryNodes == [0, 1])
        let node2 = try #require(topology.node(2))
        #expect(!node2.hasMemory && node2.online && node2.cpus == [2, 3])
        for mode in ["bind", "preferred", "interleave"] {
            _ = try report.passed("reject/memoryless/node2/\(mode)")
        }
        // The kernel agrees, without our validation: mbind to the memoryless node is EINVAL.
        #expect(try report.passed("kernel-refuses/memoryless/node2/bind")["errno"] == Int(EINVAL))
        #expect(try report.passed("kernel-refuses/memoryless/node2/preferred")["errno"] == Int(EINVAL))
        for target in [0, 1] {
            #expect(try report.passed("bind/node\(target)/populate-from-node2")["node\(target)"] == 64)
        }
        // Its CPUs' own first touch lands on a node with memory.
        let local = try report.passed("first-touch/node2")
        #expect(local["present"] == 64 && local["node2"] == nil)
        report.expectAllPassed()
    }
}

extension VirtualMachineTests {
    @Test(
        "verify --require multi-node passes in a guest with a memoryless node: the multi-node checks run, none skips",
        .enabled(if: VM.missing == nil, VM.reason), needsNoSanitizer, .timeLimit(.minutes(10)))
    func verifyRequiresMultiNode() throws {
        let start = ContinuousClock.now
        let (status, data) = try VM.run(nodes: Self.memoryless, ["verify", "--json", "--require", "multi-node"])
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(String(decoding: data, as: UTF8.self))")
        let checks = try #require(json["checks"] as? [[String: Any]])
        for check in checks where check["status"] as? String == "fail" {
            Issue.record("failed in the guest: \(check)")
        }
        #expect(status == 0 && json["status"] as? String == "pass")
        #expect(json["required"] as? [String] == ["multi-node"])
        let multiNode = checks.filter { $0["allocator"] as? String == "numa/multi-node" }
        let passed = Set(multiNode.filter { $0["status"] as? String == "pass" }.compactMap { $0["name"] as? String })
        #expect(passed.isSuperset(of: [
            "bind/node0/populate-from-node1", "bind/node1/populate-from-node2", "reject/memoryless/node2/bind",
            "kernel-refuses/memoryless/node2/bind", "first-touch/node2", "interleave", "scheduler/worker-node-stacks",
        ]), "\(passed.sorted())")
        // The bind checks of verify itself: MPOL_BIND read back, the control populated on the other node.
        for node in [0, 1] {
            let bind = checks.first { $0["name"] as? String == "bind-node\(node)" }
            #expect(bind?["status"] as? String == "pass", "\(String(describing: bind))")
            #expect((bind?["detail"] as? String)?.contains("populated on node \(1 - node)") == true, "\(String(describing: bind))")
        }
        #expect(ContinuousClock.now - start < .seconds(450))
    }
}

/// What `numa-check --json` prints.
struct VMReport: Decodable {
    struct Check: Decodable {
        let name: String
        /// pass, fail or skip.
        let status: String
        let detail: String
        let counts: [String: Int]
        let capability: String?
    }

    let passed: Bool
    let kernel: String
    let topology: NUMATopology?
    let checks: [Check]

    /// The counts of the check `name`, after expecting it to be present and passed (a skip is not a pass).
    func passed(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Int] {
        let check = try #require(
            checks.first { $0.name == name }, "no check \(name) in \(checks.map(\.name))",
            sourceLocation: sourceLocation)
        #expect(check.status == "pass", "\(name): \(check.status): \(check.detail)", sourceLocation: sourceLocation)
        return check.counts
    }

    /// No check failed.
    func expectAllPassed(sourceLocation: SourceLocation = #_sourceLocation) {
        for check in checks where check.status == "fail" {
            Issue.record("\(check.name) failed: \(check.detail)", sourceLocation: sourceLocation)
        }
        #expect(passed, sourceLocation: sourceLocation)
    }
}

/// scripts/numa-vm and what it needs.
enum VM {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let script = packageRoot.appendingPathComponent("scripts/numa-vm").path
    /// The fiberstacks binary built next to the test bundle.
    static let fiberstacks = fiberstacksBinary

    /// What is missing to boot a VM here, or nil.
    static let missing: String? = {
        #if arch(x86_64)
            let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
            let hasQemu = path.split(separator: ":").contains {
                FileManager.default.isExecutableFile(atPath: "\($0)/qemu-system-x86_64")
            }
            let kernels = (try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []
            let hasKernel = kernels.contains {
                $0.hasPrefix("vmlinuz-") && $0.hasSuffix("-amd64")
                    && FileManager.default.isReadableFile(atPath: "/boot/\($0)")
            }
            let hasBusybox = ["/bin/busybox", "/usr/bin/busybox"].contains {
                FileManager.default.isExecutableFile(atPath: $0)
            }
            let absent = [
                (hasQemu, "qemu-system-x86_64"), (hasKernel, "a readable /boot/vmlinuz-*-amd64"),
                (hasBusybox, "busybox"),
            ]
            .filter { !$0.0 }.map(\.1)
            guard absent.isEmpty else { return absent.joined(separator: ", ") }
            guard FileManager.default.isExecutableFile(atPath: fiberstacks) else {
                return "the fiberstacks binary at \(fiberstacks)"
            }
            return nil
        #else
            return "an x86_64 host (scripts/numa-vm boots qemu-system-x86_64)"
        #endif
    }()

    static var reason: Comment {
        "needs \(missing ?? ""): apt-get install qemu-system-x86 linux-image-amd64 busybox-static (scripts/setup does)"
    }

    /// Boots a VM with the node layout `nodes`, runs `fiberstacks numa-check --json --disposable-machine` in
    /// it, and decodes what it printed. The guest's exit status must be 0 (all passed) or 1 (a check failed).
    /// A boot that fails before the guest runs anything (exit 3: emulated hardware misbehaving under a loaded
    /// host) is tried once more; the test never sees half a run.
    static func run(nodes: String) throws -> VMReport {
        let (_, data) = try run(nodes: nodes, ["numa-check", "--json", "--disposable-machine"])
        return try JSONDecoder().decode(VMReport.self, from: data)
    }

    /// Boots a VM with the node layout `nodes` and runs `fiberstacks arguments` in it: its exit status
    /// (0 or 1; anything else fails the test) and standard output.
    static func run(nodes: String, _ arguments: [String]) throws -> (Int32, Data) {
        for attempt in 1...2 {
            let (status, data, stderr) = try boot(nodes: nodes, arguments)
            if status == 3, attempt == 1 { continue }
            try #require(status == 0 || status == 1, "scripts/numa-vm --nodes '\(nodes)' exited \(status): \(stderr)")
            return (status, data)
        }
        preconditionFailure("unreachable: the second attempt returns or throws")
    }

    /// One run of scripts/numa-vm (killed past its 450 s limit): its exit status, standard output and error.
    private static func boot(nodes: String, _ arguments: [String]) throws -> (Int32, Data, String) {
        let child = try ChildProcess.run(
            "/bin/bash", [script, "--nodes", nodes, "--timeout", "400", "--", fiberstacks] + arguments, timeLimit: 450)
        try #require(!child.timedOut, "scripts/numa-vm --nodes '\(nodes)' ran past 450 s: \(child.standardError.suffix(2000))")
        return (child.status ?? 128 + (child.signal ?? 0), Data(child.standardOutput.utf8), child.standardError)
    }
}
