import TestSupport
import Testing

@testable import RAPLBackend

@Suite struct MSRBackendTests {
    typealias R = MSRBackend.Register

    @Test func intelClientPackageCoreUncorePsys() throws {
        let tree = FakeTree()
        tree.cpu(0, package: 0, core: 0)
        tree.cpu(1, package: 0, core: 0)
        tree.msr(cpu: 0, R.intelPowerUnit, 0x000A_0E03)  // ESU 14: 61.03515625 µJ
        tree.msr(cpu: 0, R.intelPackage, 1000)
        tree.msr(cpu: 0, R.intelPP0, 500)
        tree.msr(cpu: 0, R.intelPP1, 20)
        tree.msr(cpu: 0, R.intelPlatform, 3000)
        let facts = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .intel, family: 6, model: 0x8C))
        let backend = try MSRBackend(paths: tree.paths, facts: facts)
        let kinds = backend.counters.map(\.domain.kind)
        #expect(kinds.starts(with: [.package, .core, .uncore]))
        #expect(kinds.contains(.psys))
        #expect(backend.counters.allSatisfy { $0.unit == .joulesPowerOfTwo(14) })
        #expect(try backend.read(0) == RawCount(value: 1000, modulus: UInt128(1) << 32))
        #expect(backend.notes.contains { $0.contains("32-bit counter wraps after 262144 J") })
    }

    @Test func twoSocketServerUsesTheFixedDRAMUnitAndOneCPUPerPackage() throws {
        let tree = FakeTree()
        for cpu in 0..<4 { tree.cpu(cpu, package: cpu / 2, core: cpu % 2) }
        for cpu in [0, 2] {
            tree.msr(cpu: cpu, R.intelPowerUnit, 0x000A_0E03)
            tree.msr(cpu: cpu, R.intelPackage, UInt64(100 + cpu))
            tree.msr(cpu: cpu, R.intelDRAM, UInt64(200 + cpu))
        }
        let facts = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .intel, family: 6, model: 0x55))
        let backend = try MSRBackend(paths: tree.paths, facts: facts)
        let dram = backend.counters.filter { $0.domain.kind == .dram }
        #expect(dram.map(\.domain.socket) == [0, 1])
        #expect(dram.allSatisfy { $0.unit == .joulesPowerOfTwo(16) })
        #expect(backend.counters.filter { $0.domain.kind == .package }.allSatisfy { $0.unit == .joulesPowerOfTwo(14) })
        #expect(backend.counters.allSatisfy { $0.source.contains("/cpu/0/") || $0.source.contains("/cpu/2/") })
        let pkg1 = try #require(backend.counters.firstIndex { $0.domain == Domain(.package, socket: 1) })
        #expect(try backend.read(pkg1).value == 102)
    }

    /// AMD's RAPL MSRs have consecutive addresses (unit 0xC0010299, core 0xC001029A, package
    /// 0xC001029B), so in a file read at offset = address their 8-byte windows overlap, exactly as they
    /// would through the msr driver's offsets. The test writes unit, core, package in that order and
    /// takes the expected raw values from the file itself (`tree.readMSR`), so the backend is checked
    /// for the offsets, the unit bits, the 32-bit mask, per-core summing and wraparound.
    @Test func amdEpycSumsPerCoreCountersWithA2toMinus16Unit() throws {
        let tree = FakeTree()
        // One package, 2 cores with 2 threads each.
        for cpu in 0..<4 { tree.cpu(cpu, package: 0, core: cpu % 2) }
        tree.msr(cpu: 0, R.amdPowerUnit, 0x000A_1003)  // ESU (bits 12:8) = 16
        tree.msr(cpu: 0, R.amdCore, 0x10)  // its low byte is the unit's bits 15:8, so ESU stays 16
        tree.msr(cpu: 0, R.amdPackage, 0xFFFF_FFF0)
        tree.msr(cpu: 1, R.amdCore, 200)
        let facts = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .amd, family: 0x17, model: 0x31))
        let backend = try MSRBackend(paths: tree.paths, facts: facts)
        #expect(backend.counters.map(\.domain) == [Domain(.package, socket: 0), Domain(.core, socket: 0), Domain(.core, socket: 0)])
        #expect(backend.counters.allSatisfy { $0.unit == .joulesPowerOfTwo(16) })
        #expect(backend.counters.map(\.source).map { $0.hasSuffix("@0xc001029b") || $0.hasSuffix("@0xc001029a") } == [true, true, true])
        let meter = EnergyMeter(backend: backend)
        let t0 = Duration.zero
        func raw(_ cpu: Int, _ register: UInt32) -> UInt64 { tree.readMSR(cpu: cpu, register) & 0xFFFF_FFFF }
        let before = [raw(0, R.amdPackage), raw(0, R.amdCore), raw(1, R.amdCore)]
        meter.read(now: t0)
        tree.msr(cpu: 0, R.amdPackage, 0x0000_0010)  // wrapped: +0x20 counts
        tree.msr(cpu: 1, R.amdCore, 230)
        let after = [raw(0, R.amdPackage), raw(0, R.amdCore), raw(1, R.amdCore)]
        meter.read(now: t0 + .milliseconds(100))
        func delta(_ i: Int) -> UInt128 { UInt128((after[i] &- before[i]) & 0xFFFF_FFFF) }
        #expect(delta(0) == 0x20)
        let unit = EnergyUnit.joulesPowerOfTwo(16)
        #expect(meter.totals == [unit.microjoules(delta(0)), unit.microjoules(delta(1)) + unit.microjoules(delta(2))])
        #expect(meter.totals[1] > 0)
    }

    @Test func multiDiePackageReadsOneCPUPerDie() throws {
        let tree = FakeTree()
        // One package with two dies of two CPUs each (Cascade Lake-AP style).
        for cpu in 0..<4 { tree.cpu(cpu, package: 0, die: cpu / 2, core: cpu) }
        for cpu in [0, 2] {
            tree.msr(cpu: cpu, R.intelPowerUnit, 0x000A_0E03)
            tree.msr(cpu: cpu, R.intelPackage, UInt64(10 + cpu))
        }
        let facts = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .intel, family: 6, model: 0x55))
        let backend = try MSRBackend(paths: tree.paths, facts: facts)
        let packages = backend.counters.filter { $0.domain.kind == .package }
        #expect(packages.map(\.domain) == [Domain(.package, socket: 0, die: 0), Domain(.package, socket: 0, die: 1)])
        #expect(packages.map { $0.domain.component() } == ["package-0-die-0", "package-0-die-1"])
        let die1 = try #require(backend.counters.firstIndex { $0.domain == Domain(.package, socket: 0, die: 1) })
        #expect(try backend.read(die1).value == 12)
    }

    @Test func missingDeviceAndShortFileGiveClearMessages() throws {
        let tree = FakeTree()
        tree.cpu(0, package: 0)
        tree.cpu(1, package: 1)
        // Package 0: the file ends before the package register (0x611).
        tree.msr(cpu: 0, R.intelPowerUnit, 0x000A_0E03)
        // Package 1 has no msr device at all, at first.
        let facts = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .intel, family: 6, model: 0x8C))
        let backend = try MSRBackend(paths: tree.paths, facts: facts)
        #expect(backend.notes.contains { $0.contains("package 1 skipped") && $0.contains("/cpu/1/msr") })
        let error = #expect(throws: CounterReadError.self) { try backend.read(0) }
        #expect(error?.message.contains("register 0x611") == true)
        #expect(error?.message.contains("ends before the register") == true)
        // The device appears (modprobe msr): refresh picks the package up.
        tree.msr(cpu: 1, R.intelPowerUnit, 0x000A_0E03)
        tree.msr(cpu: 1, R.intelPackage, 77)
        #expect(backend.refresh().isEmpty)
        let pkg1 = try #require(backend.counters.firstIndex { $0.domain == Domain(.package, socket: 1) })
        #expect(try backend.read(pkg1).value == 77)
    }

    @Test func unavailableWithoutDeviceOrCapability() {
        let tree = FakeTree()
        tree.cpu(0, package: 0)
        tree.mkdir("dev/cpu/0")
        let intel = SystemFacts(capabilities: [.sysRawio], perfParanoid: 2, identity: CPUIdentity(vendor: .intel, family: 6, model: 0x8C))
        let noDriver = #expect(throws: BackendUnavailable.self) { try MSRBackend(paths: tree.paths, facts: intel) }
        #expect(noDriver?.reason.contains("msr driver is not loaded") == true)
        #expect(noDriver?.fix.contains("modprobe msr") == true)

        tree.msr(cpu: 0, R.intelPowerUnit, 0x000A_0E03)
        var noCap = intel
        noCap.capabilities = []
        let capError = #expect(throws: BackendUnavailable.self) { try MSRBackend(paths: tree.paths, facts: noCap) }
        #expect(capError?.reason.contains("CAP_SYS_RAWIO") == true)

        var oldAMD = intel
        oldAMD.identity = CPUIdentity(vendor: .amd, family: 0x15, model: 1)
        let vendorError = #expect(throws: BackendUnavailable.self) { try MSRBackend(paths: tree.paths, facts: oldAMD) }
        #expect(vendorError?.reason.contains("amd family 21") == true)
    }
}
