import Foundation
import TestSupport
import Testing

@testable import RAPLBackend

/// The perf backend against the real `perf_event_open(2)`. A fake `power` PMU directory points at this
/// machine's real `software` PMU (event 0, cpu-clock), so the syscall, the read and the unit conversion
/// run for real with a counter that moves.
@Suite struct PerfBackendTests {
    static let softwareType = FakeTree.realPMUType("software")
    static let hasRealRAPLPMU =
        FileManager.default.fileExists(atPath: "/sys/bus/event_source/devices/power/events/energy-pkg")
        || FileManager.default.fileExists(atPath: "/sys/bus/event_source/devices/power/events/energy-psys")

    func tree(events: [(String, String, String)]) throws -> FakeTree {
        let tree = FakeTree()
        tree.cpu(0, package: 0)
        tree.cpu(1, package: 0)
        tree.perfPMU(type: try #require(Self.softwareType), cpumask: "0", events: events)
        return tree
    }

    @Test func realSyscallOpensReadsAndConverts() async throws {
        let tree = try tree(events: [
            ("energy-pkg", "event=0x00", "2.3283064365386962890625e-10"),
            ("energy-ram", "event=0x00", "1e-9"),  // 1 W per busy CPU: under the glitch bound however slow the test
        ])
        let backend = try PerfBackend(paths: tree.paths, facts: rootFacts)
        #expect(backend.counters.map(\.domain) == [Domain(.package, socket: 0), Domain(.dram, socket: 0)])
        #expect(backend.counters[0].unit == EnergyUnit(decimalJoules: "2.3283064365386962890625e-10"))
        #expect(backend.counters[0].source == "perf power/energy-pkg/ cpu 0")
        let first = try backend.read(1)
        #expect(first.modulus == UInt128(1) << 64)
        try await Task.sleep(for: .milliseconds(20))
        let second = try backend.read(1)
        // cpu-clock counts nanoseconds, so 20 ms later it has moved.
        #expect(second.value > first.value)
        let meter = EnergyMeter(backend: backend)
        let t0 = Duration.zero
        meter.read(now: t0)
        try await Task.sleep(for: .milliseconds(20))
        meter.read(now: t0 + .milliseconds(20))
        let dram = try #require(meter.index(of: Domain(.dram, socket: 0)))
        #expect(meter.totals[dram] > 0)
        #expect(meter.statuses[dram] == .ok)
    }

    @Test func oneCounterPerCPUInTheMaskWithDies() throws {
        // This machine has CPUs 0 and 1: make them two dies of one package. CPU 7 does not exist here:
        // its counters fail to open, are reported, and the others work.
        let tree = FakeTree()
        tree.cpu(0, package: 0, die: 0)
        tree.cpu(1, package: 0, die: 1)
        tree.cpu(7, package: 1, die: 0)
        tree.perfPMU(
            type: try #require(Self.softwareType), cpumask: "0-1,7",
            events: [("energy-pkg", "event=0x00", "1e-9"), ("energy-ram", "event=0x00", "1e-9")])
        let backend = try PerfBackend(paths: tree.paths, facts: rootFacts)
        #expect(
            backend.counters.filter { $0.domain.kind == .package }.map { $0.domain.component() } == [
                "package-0-die-0", "package-0-die-1", "package-1-die-0",
            ])
        #expect(Set(backend.counters.map(\.domain)).count == 6)
        #expect(backend.notes.contains { $0.contains("perf power/energy-pkg/ cpu 7") && $0.contains("retried") })
        for i in backend.counters.indices where !backend.counters[i].source.hasSuffix("cpu 7") {
            _ = try backend.read(i)
        }
        let offline = try #require(backend.counters.firstIndex { $0.source.hasSuffix("cpu 7") })
        #expect(throws: CounterReadError.self) { try backend.read(offline) }
    }

    @Test func unknownAndMalformedEventsAreSkippedByName() throws {
        let tree = try tree(events: [
            ("energy-pkg", "event=0x00", "2.3283064365386962890625e-10"),
            ("energy-foo", "event=0x09", "1e-6"),
            ("energy-ram", "umask=0x1", "1e-6"),
            ("energy-gpu", "event=0x00", "lots"),
        ])
        let backend = try PerfBackend(paths: tree.paths, facts: rootFacts)
        #expect(backend.counters.map(\.domain.kind) == [.package])
        #expect(backend.notes.contains { $0.contains("unknown event") && $0.contains("events/energy-foo") })
        #expect(backend.notes.contains { $0.contains("events/energy-ram skipped") })
        #expect(backend.notes.contains { $0.contains("energy-gpu.scale") })
    }

    @Test func refusedWithoutPerfmonWhenParanoid() throws {
        let tree = try tree(events: [("energy-pkg", "event=0x00", "1e-6")])
        let facts = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: nil)
        let error = #expect(throws: BackendUnavailable.self) { try PerfBackend(paths: tree.paths, facts: facts) }
        #expect(error?.reason.contains("perf_event_paranoid is 2") == true)
        #expect(error?.fix.contains("CAP_PERFMON") == true)
        // paranoid ≤ 0 needs no capability.
        let relaxed = SystemFacts(capabilities: [], perfParanoid: 0, identity: nil)
        #expect(throws: Never.self) { try PerfBackend(paths: tree.paths, facts: relaxed) }
    }

    @Test func kernelRefusalOfEveryEventMakesItUnavailable() throws {
        // A PMU type no kernel has: perf_event_open fails with ENOENT for every counter.
        let tree = FakeTree()
        tree.cpu(0, package: 0)
        tree.perfPMU(type: 0x7FFF_FFF0, cpumask: "0", events: [("energy-pkg", "event=0x02", "1e-6")])
        let error = #expect(throws: BackendUnavailable.self) { try PerfBackend(paths: tree.paths, facts: rootFacts) }
        #expect(error?.reason.contains("perf_event_open perf power/energy-pkg/ cpu 0") == true)
    }

    @Test func noPMUSaysSo() {
        let tree = FakeTree()
        let error = #expect(throws: BackendUnavailable.self) { try PerfBackend(paths: tree.paths, facts: rootFacts) }
        #expect(error?.reason.contains("bus/event_source/devices/power does not exist") == true)
    }

    /// The real RAPL PMU, where this machine has one (the CI VM's has none: see docs/backends.md).
    @Test(.enabled(if: hasRealRAPLPMU, "this machine has no RAPL perf PMU"))
    func realRAPLPMU() throws {
        let backend = try PerfBackend(paths: HardwarePaths(), facts: .current(paths: HardwarePaths()))
        #expect(!backend.counters.isEmpty)
        for i in backend.counters.indices { _ = try backend.read(i) }
    }
}
