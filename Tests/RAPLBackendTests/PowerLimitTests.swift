import TestSupport
import Testing

@testable import RAPLBackend

@Suite struct PowerLimitTests {
    typealias R = PowerLimitReader.Register
    static let intel = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .intel, family: 6, model: 0x8C))
    /// Power unit 1/8 W, energy 2^-14 J, time unit 1/1024 s (a common Intel value).
    static let units: UInt64 = 0x000A_0E03
    /// PL1 65 W enabled and clamped over 28 s (Y 14, Z 3); PL2 90 W enabled over 2^2/1024 s; locked.
    static let packageLimit: UInt64 = 0x8004_82D0_00DD_8208

    @Test func sysfsConstraintsAreReadAndReReadAsTheyChange() throws {
        let tree = FakeTree.powercap([("intel-rapl:0", "package-0", 1), ("intel-rapl:0:0", "core", 1)])
        tree.constraint("intel-rapl:0", 0, name: "long_term", microwatts: 65_000_000, windowMicroseconds: 27_983_872, maxMicrowatts: 65_000_000)
        tree.constraint("intel-rapl:0", 1, name: "short_term", microwatts: 90_000_000, windowMicroseconds: 2_440)
        tree.constraint("intel-rapl:0", 2, name: "peak_power", microwatts: 200_000_000)
        tree.constraint("intel-rapl:0:0", 0, name: "long_term", microwatts: 0, windowMicroseconds: 976)
        let reader = PowerLimitReader(paths: tree.paths, facts: SystemFacts(capabilities: [], perfParanoid: 2, identity: nil), leastPrivilege: false)
        #expect(reader.limitsSource == "sysfs")
        var snapshot = reader.read(now: .zero)
        let package = Domain(.package, socket: 0)
        #expect(
            snapshot.limits.filter { $0.domain == package } == [
                PowerLimit(domain: package, constraint: "long_term", watts: 65, timeWindowSeconds: 27.983872, enabled: true),
                PowerLimit(domain: package, constraint: "short_term", watts: 90, timeWindowSeconds: 0.00244, enabled: true),
                PowerLimit(domain: package, constraint: "peak_power", watts: 200, enabled: true),
            ])
        #expect(snapshot.limits.contains { $0.domain == Domain(.core, socket: 0) && $0.constraint == "long_term" && $0.watts == 0 })
        #expect(snapshot.tdp == [DomainFigure(package, 65)])
        // No MSRs: no throttling, and the reason says so.
        #expect(snapshot.throttledSeconds.isEmpty)
        #expect(reader.absent.contains { $0.hasPrefix("throttling:") && $0.contains("CPU cannot be identified") })
        // thermald or powercap-set lowers PL1 and disables the zone: the next read shows it.
        tree.setZoneFile("intel-rapl:0", "constraint_0_power_limit_uw", "45000000\n")
        tree.setZoneFile("intel-rapl:0", "enabled", "0\n")
        snapshot = reader.read(now: .seconds(5))
        let pl1 = try #require(snapshot.limits.first { $0.domain == package && $0.constraint == "long_term" })
        #expect(pl1.watts == 45 && pl1.enabled == false)
    }

    @Test func theMSRLimitRegistersAreDecodedWithTheUnitRegistersUnits() {
        let units = PowerLimitReader.Units(register: Self.units)
        #expect(units.wattsPerCount == 0.125 && units.secondsPerCount == 1.0 / 1024)
        let package = Domain(.package, socket: 0)
        #expect(
            PowerLimitReader.decodeLimit(Self.packageLimit, domain: package, units: units) == [
                PowerLimit(domain: package, constraint: "long_term", watts: 65, timeWindowSeconds: 28, enabled: true, clamped: true, locked: true),
                PowerLimit(
                    domain: package, constraint: "short_term", watts: 90, timeWindowSeconds: 4.0 / 1024, enabled: true, clamped: false, locked: true),
            ])
        // DRAM: one limit, no clamp bit; lock in bit 31. 15 W (120 counts), disabled, window 2^3 × 1.25 units.
        let dram = Domain(.dram, socket: 1)
        #expect(
            PowerLimitReader.decodeLimit(0x8000_0000 | (0x23 << 17) | 120, domain: dram, units: units) == [
                PowerLimit(domain: dram, constraint: "long_term", watts: 15, timeWindowSeconds: 10.0 / 1024, enabled: false, locked: true)
            ])
    }

    /// An Intel machine with MSRs only, holding `registers`. The fake device file, like the kernel's, has
    /// each 8-byte register at the offset of its number, so neighbours overlap and a test writes only
    /// the ones it reads; a register past the end of the file reads as one the CPU lacks.
    func msrTree(_ registers: [(UInt32, UInt64)]) -> FakeTree {
        let tree = FakeTree()
        tree.cpu(0, package: 0)
        tree.msr(cpu: 0, MSRBackend.Register.intelPowerUnit, Self.units)
        for (register, value) in registers { tree.msr(cpu: 0, register, value) }
        return tree
    }

    @Test func msrLimitsWithoutPowercap() {
        let tree = msrTree([(R.packagePowerLimit, Self.packageLimit)])
        let reader = PowerLimitReader(paths: tree.paths, facts: Self.intel, leastPrivilege: false)
        #expect(reader.limitsSource == "msr")
        let snapshot = reader.read(now: .zero)
        #expect(snapshot.limits.map(\.constraint) == ["long_term", "short_term"])
        #expect(snapshot.limits.first?.clamped == true)
        // The file ends at 0x618: the perf-status, power-info, DRAM and PP0 registers are absent (as where
        // the CPU lacks them), and so are their series.
        #expect(snapshot.tdp.isEmpty && snapshot.throttledSeconds.isEmpty)
        #expect(reader.absent.contains { $0.hasPrefix("throttling:") } && reader.absent.contains { $0.hasPrefix("TDP:") })
        #expect(
            reader.describe()
                == "power limits (msr): package-0 long_term 65.0 W over 28.0 s; package-0 short_term 90.0 W over 0.0039 s")
    }

    @Test func theTDPFromPowerInfo() {
        let tree = msrTree([(R.packagePowerInfo, 520)])
        let snapshot = PowerLimitReader(paths: tree.paths, facts: Self.intel, leastPrivilege: false).read(now: .zero)
        #expect(snapshot.tdp == [DomainFigure(Domain(.package, socket: 0), 65)])
    }

    @Test func theThrottleCounterWrapsExactlyAndAGlitchIsNotTime() {
        let start: UInt64 = 0xFFFF_FF00
        let tree = msrTree([(R.packagePerfStatus, start)])
        let reader = PowerLimitReader(paths: tree.paths, facts: Self.intel, leastPrivilege: false)
        _ = reader.read(now: .zero)
        // Across the 32-bit wrap: 0x100 + 0x100 = 512 units of 1/1024 s in 5 s.
        tree.msr(cpu: 0, R.packagePerfStatus, 0x100)
        var snapshot = reader.read(now: .seconds(5))
        #expect(snapshot.throttledSeconds.first?.value == 0.5)
        // 4.5 s more: the sum is the counter's whole change, in time units, exactly.
        tree.msr(cpu: 0, R.packagePerfStatus, 0x100 + 4608)
        snapshot = reader.read(now: .seconds(10))
        #expect(snapshot.throttledSeconds.first?.value == 5.0)
        // A step back would read as 48 days throttled in 5 s: a glitch, not counted, re-based.
        tree.msr(cpu: 0, R.packagePerfStatus, 0x50)
        snapshot = reader.read(now: .seconds(15))
        #expect(snapshot.throttledSeconds.first?.value == 5.0)
        #expect(snapshot.throttleGlitches.first?.value == 1)
        tree.msr(cpu: 0, R.packagePerfStatus, 0x50 + 1024)
        snapshot = reader.read(now: .seconds(20))
        #expect(snapshot.throttledSeconds.first?.value == 6.0)
    }

    @Test func absentItemsSayWhy() {
        let amdTree = msrTree([(R.packagePerfStatus, 0)])
        let amd = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .amd, family: 0x19, model: 1))
        let onAMD = PowerLimitReader(paths: amdTree.paths, facts: amd, leastPrivilege: false)
        #expect(onAMD.isEmpty)
        #expect(onAMD.absent.contains { $0.hasPrefix("throttling:") && $0.contains("AMD") })
        let unprivileged = PowerLimitReader(
            paths: amdTree.paths, facts: SystemFacts(capabilities: [], perfParanoid: 2, identity: Self.intel.identity), leastPrivilege: false)
        #expect(unprivileged.absent.contains { $0.hasPrefix("power limits:") && $0.contains("CAP_SYS_RAWIO") })
        #expect(unprivileged.describe() == "power limits (none): nothing readable")
    }
}
