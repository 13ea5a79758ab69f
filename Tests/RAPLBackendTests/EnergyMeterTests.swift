import Support
import TestSupport
import Testing

@testable import RAPLBackend

@Suite struct EnergyMeterTests {
    let t0 = Duration.zero

    @Test func wrapsAt32Bits() {
        let backend = ScriptedBackend(
            [CounterSpec(domain: Domain(.package, socket: 0), unit: .joulesPowerOfTwo(14), source: "fake")], modulus: UInt128(1) << 32)
        let meter = EnergyMeter(backend: backend)
        backend.values[0] = .success(0xFFFF_FF00)
        meter.read(now: t0)
        #expect(meter.totals == [0])
        backend.values[0] = .success(0x0000_0100)  // wrapped: 0x200 counts later
        meter.read(now: t0 + .milliseconds(100))
        #expect(meter.totals == [EnergyUnit.joulesPowerOfTwo(14).microjoules(0x200)])
        #expect(meter.statuses == [.ok])
    }

    @Test func wrapsAt64BitsWithWrappingSubtraction() {
        let backend = ScriptedBackend(
            [CounterSpec(domain: Domain(.package, socket: 0), unit: .microjoule, source: "fake")], modulus: UInt128(1) << 64)
        let meter = EnergyMeter(backend: backend)
        backend.values[0] = .success(UInt64.max - 9)
        meter.read(now: t0)
        backend.values[0] = .success(5)
        meter.read(now: t0 + .seconds(1))
        #expect(meter.totals == [15])
    }

    @Test func wrapsAtMaxEnergyRange() {
        // sysfs: values run 0...max_energy_range_uj, so the modulus is max + 1.
        let backend = ScriptedBackend([CounterSpec(domain: Domain(.package, socket: 0), unit: .microjoule, source: "fake")], modulus: 1001)
        let meter = EnergyMeter(backend: backend)
        backend.values[0] = .success(990)
        meter.read(now: t0)
        backend.values[0] = .success(9)
        meter.read(now: t0 + .seconds(1))
        #expect(meter.totals == [20])
    }

    @Test func aFailedReadLosesNoEnergyAndOthersKeepWorking() {
        let specs = [
            CounterSpec(domain: Domain(.package, socket: 0), unit: .microjoule, source: "a"),
            CounterSpec(domain: Domain(.dram, socket: 0), unit: .microjoule, source: "b"),
        ]
        let backend = ScriptedBackend(specs, modulus: UInt128(1) << 32)
        let meter = EnergyMeter(backend: backend, retryAfter: .seconds(1))
        backend.values = [.success(100), .success(1000)]
        meter.read(now: t0)
        backend.values = [.success(200), .failure(CounterReadError("b: garbage"))]
        meter.read(now: t0 + .milliseconds(100))
        let dram = meter.index(of: Domain(.dram, socket: 0))!
        let pkg = meter.index(of: Domain(.package, socket: 0))!
        #expect(meter.totals[pkg] == 100)
        #expect(meter.statuses[dram] == .failed("b: garbage"))
        #expect(meter.readErrors[dram] == 1)
        // A first failure is retried at the very next read…
        var readsBefore = backend.reads
        meter.read(now: t0 + .milliseconds(200))
        #expect(backend.reads == readsBefore + 2)
        #expect(meter.readErrors[dram] == 2)
        // …then the waits grow (10 ms after the second failure): not read within them.
        readsBefore = backend.reads
        meter.read(now: t0 + .milliseconds(205))
        #expect(backend.reads == readsBefore + 1)
        #expect(meter.statuses[dram] != .ok)
        // Once readable, the energy used meanwhile arrives in one piece.
        backend.values[1] = .success(1500)
        meter.read(now: t0 + .milliseconds(300))
        #expect(meter.totals[dram] == 500)
        #expect(meter.statuses[dram] == .ok)
    }

    @Test func retryDelaysGrowToTheCap() {
        let meter = EnergyMeter(backend: ScriptedBackend([], modulus: 1), retryAfter: .seconds(1))
        #expect(meter.retryDelay(afterFailures: 1) == .zero)
        #expect(meter.retryDelay(afterFailures: 2) == .milliseconds(10))
        #expect(meter.retryDelay(afterFailures: 3) == .milliseconds(20))
        #expect(meter.retryDelay(afterFailures: 8) == .milliseconds(640))
        #expect(meter.retryDelay(afterFailures: 9) == .seconds(1))
        #expect(meter.retryDelay(afterFailures: 1000) == .seconds(1))
    }

    @Test func staticCountersAreReportedStuckThenRecover() {
        let backend = ScriptedBackend([CounterSpec(domain: Domain(.psys, socket: 0), unit: .microjoule, source: "psys")], modulus: UInt128(1) << 64)
        let meter = EnergyMeter(backend: backend, stuckAfter: .seconds(3))
        for ms in stride(from: 0, through: 2900, by: 100) {
            meter.read(now: t0 + .milliseconds(ms))
            #expect(meter.statuses == [.ok])
        }
        meter.read(now: t0 + .milliseconds(3000))
        #expect(meter.statuses == [.stuck])
        backend.values[0] = .success(7)
        meter.read(now: t0 + .milliseconds(3100))
        #expect(meter.statuses == [.ok])
        #expect(meter.totals == [7])
    }

    @Test func severalCountersSumIntoOneDomain() {
        // AMD: per-core energy MSRs summed into "core"; each wraps on its own.
        let core = Domain(.core, socket: 0)
        let specs = (0..<3).map { CounterSpec(domain: core, unit: .microjoule, source: "cpu\($0)") }
        let backend = ScriptedBackend(specs, modulus: 100)
        let meter = EnergyMeter(backend: backend)
        backend.values = [.success(10), .success(90), .success(50)]
        meter.read(now: t0)
        backend.values = [.success(20), .success(5), .success(51)]
        meter.read(now: t0 + .seconds(1))
        #expect(meter.domains == [core])
        #expect(meter.totals == [10 + 15 + 1])
    }
}
