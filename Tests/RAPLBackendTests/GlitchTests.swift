import Support
import TestSupport
import Testing

@testable import RAPLBackend

/// A counter that moves in a way no hardware can is never energy: small steps back, resets to 0 and
/// impossible forward jumps export nothing for that step and re-base; real wraps stay exact.
@Suite struct GlitchTests {
    let pkg = Domain(.package, socket: 0)

    func scripted(unit: EnergyUnit, modulus: UInt128, kind: BackendKind = .sysfs) -> (ScriptedBackend, EnergyMeter, LogCapture) {
        let backend = ScriptedBackend([CounterSpec(domain: pkg, unit: unit, source: "fake")], modulus: modulus)
        let log = LogCapture()
        return (backend, EnergyMeter(backend: backend, logger: log.logger), log)
    }

    /// Each backend's counter shape: sysfs (µJ, max_energy_range_uj), MSR (2^-14 J, 32 bits), AMD MSR
    /// (2^-16 J, 32 bits), perf (2^-32 J, 64 bits).
    static let shapes: [(String, EnergyUnit, UInt128)] = [
        ("sysfs", .microjoule, 262_143_328_850 + 1),
        ("msr", .joulesPowerOfTwo(14), UInt128(1) << 32),
        ("amd-msr", .joulesPowerOfTwo(16), UInt128(1) << 32),
        ("perf", EnergyUnit(decimalJoules: "2.3283064365386962890625e-10")!, UInt128(1) << 64),
    ]

    /// Raw counts for `joules` of energy in `unit`.
    func counts(_ joules: Double, _ unit: EnergyUnit) -> UInt64 { UInt64(joules * 1e6 / unit.microjoulesPerCount) }

    @Test(arguments: 0..<4)
    func smallStepBackIsAGlitchNotAWrap(_ shape: Int) {
        let (_, unit, modulus) = Self.shapes[shape]
        let (backend, meter, log) = scripted(unit: unit, modulus: modulus)
        let start = counts(1000, unit)
        backend.values[0] = .success(start)
        meter.read(now: .zero)
        backend.values[0] = .success(start + counts(5, unit))  // 5 J in 100 ms: 50 W
        meter.read(now: .milliseconds(100))
        let before = meter.totals[0]
        #expect(before == unit.microjoules(UInt128(counts(5, unit))))
        // One millijoule back: as a wrap this would be almost a whole range (tens of kJ and more).
        let back = start + counts(5, unit) - max(counts(0.001, unit), 1)
        backend.values[0] = .success(back)
        meter.read(now: .milliseconds(200))
        #expect(meter.totals[0] == before)
        #expect(meter.glitches == [1])
        guard case .glitch(let why) = meter.statuses[0] else {
            Issue.record("expected a glitch, got \(meter.statuses[0])")
            return
        }
        #expect(why.contains("stepped back"))
        #expect(log.count("stepped back") == 1)
        // Re-based on the new value: the next real step counts from it, exactly.
        backend.values[0] = .success(back + counts(2, unit))
        meter.read(now: .milliseconds(300))
        #expect(meter.totals[0] == before + unit.microjoules(UInt128(counts(2, unit))))
        #expect(meter.statuses[0] == .ok)
        #expect(log.count("consistent again after 1 impossible step") == 1)
    }

    @Test(arguments: 0..<4)
    func resetToZeroIsAGlitch(_ shape: Int) {
        let (_, unit, modulus) = Self.shapes[shape]
        let (backend, meter, _) = scripted(unit: unit, modulus: modulus)
        backend.values[0] = .success(counts(30_000, unit))
        meter.read(now: .zero)
        backend.values[0] = .success(0)
        meter.read(now: .milliseconds(100))
        #expect(meter.totals == [0])
        #expect(meter.glitches == [1])
        backend.values[0] = .success(counts(3, unit))
        meter.read(now: .milliseconds(200))
        #expect(meter.totals == [unit.microjoules(UInt128(counts(3, unit)))])
    }

    @Test(arguments: 0..<4)
    func impossibleForwardJumpIsAGlitch(_ shape: Int) {
        let (_, unit, modulus) = Self.shapes[shape]
        let (backend, meter, log) = scripted(unit: unit, modulus: modulus)
        backend.values[0] = .success(counts(10, unit))
        meter.read(now: .zero)
        // 20 kJ in 100 ms is 200 kW (on perf, 1 GW): no CPU draws that.
        let jump = shape == 3 ? counts(100_000_000, unit) : counts(20_000, unit)
        backend.values[0] = .success(counts(10, unit) + jump)
        meter.read(now: .milliseconds(100))
        #expect(meter.totals == [0])
        #expect(meter.glitches == [1])
        #expect(log.count("jumped forward") == 1)
        // Repeated glitches in one episode are logged once and counted each.
        backend.values[0] = .success(counts(5, unit))
        meter.read(now: .milliseconds(200))
        #expect(meter.glitches == [2])
        #expect(log.count("not energy") == 1)
    }

    @Test(arguments: 0..<4)
    func realWrapsAtSeveralPowersStayExact(_ shape: Int) {
        let (_, unit, modulus) = Self.shapes[shape]
        for watts in [1.0, 35, 250, 900, 4000] {
            let (backend, meter, _) = scripted(unit: unit, modulus: modulus)
            let perWindow = counts(watts * 0.1, unit)
            // Start just below the wrap, so the second step wraps.
            let start = UInt64(modulus - 1) - perWindow / 2
            var raw = start
            backend.values[0] = .success(raw)
            meter.read(now: .zero)
            var expected: UInt128 = 0
            for k in 1...5 {
                raw = UInt64((UInt128(raw) + UInt128(perWindow)) % modulus)
                expected += UInt128(perWindow)
                backend.values[0] = .success(raw)
                meter.read(now: .milliseconds(100 * k))
            }
            #expect(meter.glitches == [0], "\(watts) W")
            #expect(meter.totals == [unit.microjoules(expected)], "\(watts) W")
        }
    }

    @Test func aCounterReadRarelyMayMoveMore() {
        // The bound scales with the time since the counter's last successful read.
        let (backend, meter, _) = scripted(unit: .microjoule, modulus: 262_143_328_851)
        meter.read(now: .zero)
        backend.values[0] = .success(200_000_000_000)  // 200 kJ in 100 s: 2 kW
        meter.read(now: .seconds(100))
        #expect(meter.glitches == [0])
        #expect(meter.totals == [200_000_000_000])
    }

    @Test func theBoundIsConfigurable() {
        let backend = ScriptedBackend([CounterSpec(domain: pkg, unit: .microjoule, source: "fake")], modulus: UInt128(1) << 64)
        let meter = EnergyMeter(backend: backend, maximumPower: 100)
        meter.read(now: .zero)
        backend.values[0] = .success(10_000_000)  // 10 J in 100 ms: 100 W, under 100 W × 150 ms
        meter.read(now: .milliseconds(100))
        backend.values[0] = .success(30_000_000)  // 20 J in 100 ms: 200 W
        meter.read(now: .milliseconds(200))
        #expect(meter.totals == [10_000_000])
        #expect(meter.glitches == [1])
    }

    @Test func sysfsTreeStepBackAndReset() throws {
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0", energy: 50_000_000)
        let meter = EnergyMeter(backend: try SysfsBackend(paths: tree.paths))
        meter.read(now: .zero)
        tree.setEnergy("intel-rapl:0", 52_000_000)
        meter.read(now: .milliseconds(100))
        tree.setEnergy("intel-rapl:0", 51_999_000)  // 1 mJ back
        meter.read(now: .milliseconds(200))
        tree.setEnergy("intel-rapl:0", 0)  // reset
        meter.read(now: .milliseconds(300))
        tree.setEnergy("intel-rapl:0", 1_000_000)
        meter.read(now: .milliseconds(400))
        #expect(meter.totals == [3_000_000])
        #expect(meter.glitches == [2])
    }

    @Test func msrTreeStepBackAndJump() throws {
        typealias R = MSRBackend.Register
        let tree = FakeTree()
        tree.cpu(0, package: 0, core: 0)
        tree.msr(cpu: 0, R.intelPowerUnit, 0x000A_0E03)  // 2^-14 J
        tree.msr(cpu: 0, R.intelPackage, 100_000)
        let facts = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .intel, family: 6, model: 0x8C))
        let meter = EnergyMeter(backend: try MSRBackend(paths: tree.paths, facts: facts))
        let pkg = try #require(meter.index(of: Domain(.package, socket: 0)))
        meter.read(now: .zero)
        tree.msr(cpu: 0, R.intelPackage, 116_384)  // 1 J
        meter.read(now: .milliseconds(100))
        tree.msr(cpu: 0, R.intelPackage, 116_383)  // one count back
        meter.read(now: .milliseconds(200))
        tree.msr(cpu: 0, R.intelPackage, 116_383 + 0x8000_0000)  // 131 kJ forward
        meter.read(now: .milliseconds(300))
        tree.msr(cpu: 0, R.intelPackage, 116_383 + 0x8000_0000 + 16_384)
        meter.read(now: .milliseconds(400))
        #expect(meter.totals[pkg] == 2_000_000)
        #expect(meter.glitches[pkg] == 2)
    }
}
