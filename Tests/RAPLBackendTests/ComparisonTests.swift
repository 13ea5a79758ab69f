import Synchronization
import TestSupport
import Testing

@testable import RAPLBackend

/// `compare` reads every backend at the same instants and says where and why they disagree.
@Suite struct ComparisonTests {
    typealias R = MSRBackend.Register

    /// An Intel machine (model `model`) that the MSR and sysfs backends both read: package (and DRAM),
    /// plus a sysfs core zone that the MSR backend lacks (no PP0 register).
    func machine(model: Int) -> (FakeTree, BackendSelector) {
        let tree = FakeTree.powercap([("intel-rapl:0", "package-0", 0), ("intel-rapl:0:0", "core", 0), ("intel-rapl:0:1", "dram", 0)])
        tree.cpu(0, package: 0)
        tree.cpuinfo(vendor: "GenuineIntel", family: 6, model: model)
        tree.msr(cpu: 0, R.intelPowerUnit, 0x000A_0E03)  // 2^-14 J
        tree.msr(cpu: 0, R.intelPackage, 0)
        tree.msr(cpu: 0, R.intelDRAM, 0)
        let facts = SystemFacts(
            capabilities: [.sysRawio, .dacReadSearch], perfParanoid: 2, identity: CPUIdentity(vendor: .intel, family: 6, model: model))
        return (tree, BackendSelector(paths: tree.paths, facts: facts, moveCheck: .zero, wait: { _ in }, leastPrivilege: false))
    }

    /// Each 100 ms step: package 1 J on both (16384 MSR counts, 1e6 µJ), core 0.5 J on sysfs, DRAM
    /// `dramCounts` MSR counts and 0.25 J on sysfs.
    func stepper(_ tree: FakeTree, dramCounts: UInt64) -> (Duration) async -> Void {
        let step = Mutex<UInt64>(0)
        return { _ in
            let i = step.withLock {
                $0 += 1
                return $0
            }
            tree.msr(cpu: 0, R.intelPackage, i * 16384)
            tree.msr(cpu: 0, R.intelDRAM, i * dramCounts)
            tree.setEnergy("intel-rapl:0", i * 1_000_000)
            tree.setEnergy("intel-rapl:0:0", i * 500_000)
            tree.setEnergy("intel-rapl:0:1", i * 250_000)
        }
    }

    @Test func agreeingBackendsAndADomainOneOfThemLacks() async throws {
        let (tree, selector) = machine(model: 0x8C)
        let report = await BackendComparison.run(selector: selector, duration: .seconds(2), sleep: stepper(tree, dramCounts: 4096))
        #expect(report.compared == [.msr, .sysfs])
        #expect(report.unavailable.map(\.backend) == [.perf])
        let package = try #require(report.rows.first { $0.domain.kind == .package })
        #expect(package.readings.map(\.microjoules) == [20_000_000, 20_000_000], "the same energy, exactly")
        #expect(package.disagreement == 0 && !package.flagged && package.causes.isEmpty)
        #expect(report.rows.first { $0.domain.kind == .dram }?.disagreement == 0)
        let core = try #require(report.rows.first { $0.domain.kind == .core })
        #expect(core.missingFrom == [.msr] && core.flagged)
        #expect(core.causes.contains { $0.contains("msr does not read it") })
        #expect(report.worst == 0)
    }

    @Test func theDRAMUnitOfIntelServersIsNamed() async throws {
        // Skylake-X: the MSR backend counts DRAM in 2^-16 J. A counter written in the unit register's 2^-14 J
        // units (as a tool without the quirk assumes) disagrees with sysfs by 4×.
        let (tree, selector) = machine(model: 0x55)
        let report = await BackendComparison.run(selector: selector, duration: .seconds(1), sleep: stepper(tree, dramCounts: 4096))
        let dram = try #require(report.rows.first { $0.domain.kind == .dram })
        #expect(dram.flagged)
        #expect(try #require(dram.disagreement) > 1)
        #expect(dram.causes.contains { $0.hasPrefix("DRAM energy unit") })
        #expect(dram.causes.contains { $0.hasPrefix("a short run") })
        #expect(report.rows.first { $0.domain.kind == .package }?.flagged == false)
    }

    @Test func aGlitchIsNamedAndNotCounted() async throws {
        let (tree, selector) = machine(model: 0x8C)
        let normal = stepper(tree, dramCounts: 4096)
        let calls = Mutex(0)
        let report = await BackendComparison.run(selector: selector, duration: .seconds(1)) { d in
            await normal(d)
            if calls.withLock({
                $0 += 1
                return $0
            }) == 5 {
                tree.setEnergy("intel-rapl:0", 1)  // a step back: a glitch for sysfs
            }
        }
        let package = try #require(report.rows.first { $0.domain.kind == .package })
        #expect(package.readings.first { $0.backend == .sysfs }?.problem?.hasPrefix("glitch") == true)
        #expect(package.flagged)
        #expect(package.causes.contains { $0.hasPrefix("sysfs: glitch") })
    }
}
