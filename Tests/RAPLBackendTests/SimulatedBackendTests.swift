import TestSupport
import Testing

@testable import RAPLBackend

/// `--backend simulated`: plausible, load-following, monotonic — and never taken for a measurement.
@Suite struct SimulatedBackendTests {
    func stat(_ tree: FakeTree, busy: UInt64, idle: UInt64) {
        // user nice system idle iowait irq softirq steal guest guest_nice, then per-CPU lines.
        tree.write(
            "proc/stat",
            "cpu  \(busy / 2) 0 \(busy - busy / 2) \(idle) 0 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\nintr 12345\n")
    }

    @Test func energyFollowsTheCPUTimeOfProcStat() throws {
        let tree = FakeTree()
        stat(tree, busy: 1000, idle: 5000)
        let backend = try SimulatedBackend(paths: tree.paths)
        #expect(backend.kind == .simulated && !backend.kind.measures)
        #expect(backend.counters.map(\.domain.kind) == [.package, .core, .dram])
        let meter = EnergyMeter(backend: backend)
        meter.read(now: .zero)
        // One second of two CPUs: one busy, one idle → package 9 + 2 W, core 7 + 1 W, DRAM 1 + 1 W.
        stat(tree, busy: 1100, idle: 5100)
        meter.read(now: .seconds(1))
        #expect(meter.totals == [11_000_000, 8_000_000, 2_000_000])
        // Both idle: 2 × 2 W on the package.
        stat(tree, busy: 1100, idle: 5300)
        meter.read(now: .seconds(2))
        #expect(meter.totals[0] == 15_000_000)
        #expect(backend.notes.first?.hasPrefix("NOT A MEASUREMENT") == true)
    }

    @Test func autoNeverChoosesIt() {
        let tree = FakeTree()
        stat(tree, busy: 1, idle: 1)
        #expect(!BackendPreference.auto.order.contains(.simulated))
        let selector = BackendSelector(paths: tree.paths, facts: rootFacts, moveCheck: .zero, wait: { _ in }, leastPrivilege: false)
        #expect(selector.select(.auto).backend == nil)
        #expect(selector.select(.simulated).backend?.kind == .simulated)
    }

    @Test func withoutProcStatItIsUnavailable() {
        let tree = FakeTree()
        #expect(throws: BackendUnavailable.self) { try SimulatedBackend(paths: tree.paths) }
        var bytes = Array("cpux 1 2 3 4\n".utf8)
        #expect(bytes.withUnsafeMutableBytes { SimulatedBackend.parse(UnsafeRawBufferPointer($0)) } == nil)
        bytes = Array("cpu  1 2 3 4 5 6 7 8 9 10\n".utf8)
        let times = bytes.withUnsafeMutableBytes { SimulatedBackend.parse(UnsafeRawBufferPointer($0)) }
        #expect(times?.busy == 27 && times?.idle == 9, "user nice system irq softirq steal; idle iowait")
    }
}
