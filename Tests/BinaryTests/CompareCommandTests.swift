import Foundation
import Synchronization
import TestSupport
import Testing

@testable import RAPLBackend

/// `rapl-exporter compare`: the exit status says whether the backends agree within --tolerance.
@Suite struct CompareCommandTests {
    typealias R = MSRBackend.Register

    /// MSR and sysfs read the same package and DRAM on an Intel `model`.
    func tree(model: Int) -> FakeTree {
        let tree = FakeTree.powercap([("intel-rapl:0", "package-0", 0), ("intel-rapl:0:0", "dram", 0)])
        tree.cpu(0, package: 0)
        tree.cpuinfo(vendor: "GenuineIntel", family: 6, model: model)
        tree.msr(cpu: 0, R.intelPowerUnit, 0x000A_0E03)
        tree.msr(cpu: 0, R.intelPackage, 0)
        tree.msr(cpu: 0, R.intelDRAM, 0)
        return tree
    }

    func roots(_ tree: FakeTree) -> [String] { ["--sysfs-root", tree.sys, "--dev-root", tree.dev, "--proc-root", tree.proc] }

    /// Runs `compare` while the counters move every 25 ms: the package by the same 0.1 J on both
    /// backends, DRAM by 410 MSR counts and 25 000 µJ (equal only in the unit register's 2^-14 J).
    func compare(_ tree: FakeTree, _ arguments: [String]) async throws -> Binary.Output {
        // A thread of its own: a task on the cooperative pool can be starved while other tests block it.
        let running = Atomic(true)
        let writer = Thread {
            var i: UInt64 = 0
            while running.load(ordering: .relaxed) {
                i += 1
                tree.msr(cpu: 0, R.intelPackage, i * 1638)  // 0.1 J in 2^-14 J counts (rounded down)
                tree.setEnergy("intel-rapl:0", i * 1638 * 1_000_000 / 16384)
                tree.msr(cpu: 0, R.intelDRAM, i * 410)
                tree.setEnergy("intel-rapl:0:0", i * 25_000)
                Thread.sleep(forTimeInterval: 0.025)
            }
        }
        writer.start()
        defer { running.store(false, ordering: .relaxed) }
        return try await Binary.run(Binary.path, ["compare"] + arguments + roots(tree))
    }

    @Test func agreeingBackendsExitZeroAndTheJSONSaysWhatWasCompared() async throws {
        let tree = tree(model: 0x8C)
        let result = try await compare(tree, ["--duration", "1", "--json"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["backends"] as? [String] == ["msr", "sysfs"])
        #expect((object["unavailable"] as? [[String: Any]])?.first?["backend"] as? String == "perf")
        let domains = try #require(object["domains"] as? [[String: Any]])
        #expect(domains.map { $0["component"] as? String } == ["package-0", "dram"])
        let package = try #require(domains.first)
        #expect(try #require(package["disagreement_pct"] as? Double) < 0.5, "\(package)")
        #expect(object["exceeded"] as? Bool == false)
    }

    @Test func theDRAMUnitQuirkExceedsTheToleranceAndIsNamed() async throws {
        // Skylake-X: the MSR backend counts DRAM in 2^-16 J; the counter here moves as if in 2^-14 J.
        let tree = tree(model: 0x55)
        let result = try await compare(tree, ["--duration", "1"])
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("read msr, sysfs side by side"), "\(result.stdout)")
        #expect(result.stdout.contains("FLAGGED"))
        #expect(result.stdout.contains("cause: DRAM energy unit"), "\(result.stdout)")
        #expect(result.stdout.contains("more than the tolerance of 1.00 %"), "\(result.stdout)")
        // A tolerance above the difference passes.
        let lenient = try await compare(tree, ["--duration", "0.5", "--tolerance", "1000"])
        #expect(lenient.status == 0, "\(lenient.stdout)")
    }

    @Test func badOptionsExitTwoAndNoBackendExitsOne() async throws {
        let tree = tree(model: 0x8C)
        let bad = try await Binary.run(Binary.path, ["compare", "--duration", "0"] + roots(tree))
        #expect(bad.status == 2 && bad.stderr.contains("invalid --duration"), "\(bad.stderr)")
        let empty = FakeTree()
        let none = try await Binary.run(Binary.path, ["compare", "--duration", "0.1"] + roots(empty))
        #expect(none.status == 1)
        #expect(none.stdout.contains("no backend can read RAPL counters here"), "\(none.stdout)")
    }
}
