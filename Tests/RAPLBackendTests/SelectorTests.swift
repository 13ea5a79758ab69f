import Foundation
import TestSupport
import Testing

@testable import RAPLBackend

/// Auto-selection from injected capability sets, over one fake tree that offers all three backends.
@Suite struct SelectorTests {
    func fullTree() throws -> FakeTree { try #require(FakeTree.allBackends()) }

    func select(_ tree: FakeTree, _ caps: CapabilitySet, paranoid: Int = 2, _ preference: BackendPreference = .auto) async
        -> BackendSelector.Selection
    {
        let facts = SystemFacts(capabilities: caps, perfParanoid: paranoid, identity: CPUIdentity(vendor: .intel, family: 6, model: 0x8C))
        return BackendSelector(paths: tree.paths, facts: facts, moveCheck: .milliseconds(5), leastPrivilege: false).select(preference)
    }

    func verdict(_ s: BackendSelector.Selection, _ kind: BackendKind) -> BackendVerdict? {
        s.verdicts.first { $0.0 == kind }?.1
    }

    @Test func allCapabilitiesPicksPerf() async throws {
        let tree = try fullTree()
        let s = await select(tree, [.perfmon, .sysRawio])
        #expect(s.backend?.kind == .perf)
        #expect(verdict(s, .msr) == .notTried)
        #expect(verdict(s, .sysfs) == .notTried)
    }

    @Test func rawioOnlyPicksMSR() async throws {
        let tree = try fullTree()
        let s = await select(tree, [.sysRawio])
        #expect(s.backend?.kind == .msr)
        guard case .rejected(let why) = verdict(s, .perf) else {
            Issue.record("perf not rejected")
            return
        }
        #expect(why.reason.contains("CAP_PERFMON"))
        // The fake MSR does not move: msr is only the fallback, sysfs (also static) was tried after it.
        #expect(verdict(s, .sysfs) == .staticCounters)
    }

    @Test func noCapabilitiesFallsToSysfs() async throws {
        let tree = try fullTree()
        let s = await select(tree, [])
        #expect(s.backend?.kind == .sysfs)
        guard case .rejected(let msr) = verdict(s, .msr) else {
            Issue.record("msr not rejected")
            return
        }
        #expect(msr.reason.contains("CAP_SYS_RAWIO"))
    }

    @Test func relaxedParanoiaNeedsNoCapabilityForPerf() async throws {
        let tree = try fullTree()
        let s = await select(tree, [], paranoid: -1)
        #expect(s.backend?.kind == .perf)
    }

    @Test func movingCountersBeatStaticOnes() async throws {
        // MSR is allowed but its counter is static; the sysfs counter moves during its check.
        let tree = try fullTree()
        let facts = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .intel, family: 6, model: 0x8C))
        let calls = Counter()
        let selector = BackendSelector(
            paths: tree.paths, facts: facts, moveCheck: .milliseconds(100),
            wait: { _ in
                tree.setEnergy("intel-rapl:0", 100 + calls.next())
            }, leastPrivilege: false)
        let s = selector.select(.auto)
        #expect(s.backend?.kind == .sysfs)
        #expect(verdict(s, .msr) == .staticCounters)
        #expect(verdict(s, .sysfs) == .chosen)
    }

    /// probe's "auto would choose" and run's choice are one rule.
    @Test func autoChoiceIsOneRule() {
        #expect(BackendSelector.autoChoice([(.perf, false, false), (.msr, true, false), (.sysfs, true, true)]) == .sysfs)
        #expect(BackendSelector.autoChoice([(.perf, false, false), (.msr, true, false), (.sysfs, true, false)]) == .msr)
        #expect(BackendSelector.autoChoice([(.perf, true, true), (.msr, true, true)]) == .perf)
        #expect(BackendSelector.autoChoice([(.perf, false, false)]) == nil)
        #expect(BackendSelector.moved([1, nil, 3], [1, 5, 4]))
        #expect(!BackendSelector.moved([1, nil, 3], [1, 5, 3]))
    }

    @Test func forcedBackendIsTheOnlyOneTried() async throws {
        let tree = try fullTree()
        let s = await select(tree, [.perfmon, .sysRawio], .sysfs)
        #expect(s.backend?.kind == .sysfs)
        #expect(s.verdicts.map(\.0) == [.sysfs])
    }

    @Test func unreadableCountersRejectTheBackend() async throws {
        let tree = try fullTree()
        tree.write("sys/class/powercap/intel-rapl:0/energy_uj", "oops\n")
        let s = await select(tree, [], .sysfs)
        #expect(s.backend == nil)
        guard case .rejected(let why) = verdict(s, .sysfs) else {
            Issue.record("sysfs not rejected")
            return
        }
        #expect(why.reason.contains("no counter can be read"))
        #expect(why.reason.contains("intel-rapl:0/energy_uj"))
    }
}

final class Counter: @unchecked Sendable {
    private var value: UInt64 = 0
    func next() -> UInt64 {
        value += 1
        return value
    }
}
