import Support
import TestSupport
import Testing

@testable import RAPLBackend

@Suite struct SysfsBackendTests {
    func domains(_ backend: SysfsBackend) -> [String] {
        backend.counters.map { "\($0.domain.component())@\($0.domain.socket)" + ($0.domain.die.map { "/\($0)" } ?? "") }
    }

    @Test func intelClientWithCoreUncoreAndPsys() throws {
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0", energy: 1000)
        tree.zone("intel-rapl:0:0", name: "core", energy: 400)
        tree.zone("intel-rapl:0:1", name: "uncore", energy: 50)
        tree.zone("intel-rapl:1", name: "psys", energy: 5000)
        tree.zone("intel-rapl-mmio:0", name: "package-0", energy: 1001)
        let backend = try SysfsBackend(paths: tree.paths)
        #expect(domains(backend) == ["package-0@0", "core@0", "uncore@0", "psys@0"])
        #expect(backend.notes.contains { $0.contains("intel-rapl-mmio:0") && $0.contains("duplicates package-0") })
        #expect(try backend.read(0) == RawCount(value: 1000, modulus: 262_143_328_851))
        #expect(try backend.read(3).value == 5000)
    }

    @Test func twoSocketXeonWithDRAMSubzonesAndAnMMIODuplicate() throws {
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0", energy: 1)
        tree.zone("intel-rapl:0:0", name: "dram", energy: 2)
        tree.zone("intel-rapl:1", name: "package-1", energy: 3)
        tree.zone("intel-rapl:1:0", name: "dram", energy: 4)
        tree.zone("intel-rapl-mmio:0", name: "package-0", energy: 9)
        let backend = try SysfsBackend(paths: tree.paths)
        #expect(domains(backend) == ["package-0@0", "dram@0", "package-1@1", "dram@1"])
        #expect(try backend.counters.indices.map { try backend.read($0).value } == [1, 2, 3, 4])
        // Every (component, socket) is unique.
        #expect(Set(backend.counters.map(\.domain)).count == 4)
    }

    @Test func mmioZoneIsUsedWhenItIsTheOnlyOne() throws {
        let tree = FakeTree()
        tree.zone("intel-rapl-mmio:0", name: "package-0", energy: 9)
        let backend = try SysfsBackend(paths: tree.paths)
        #expect(domains(backend) == ["package-0@0"])
    }

    @Test func multiDiePackagesAreUnique() throws {
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0-die-0", energy: 1)
        tree.zone("intel-rapl:0:0", name: "core", energy: 1)
        tree.zone("intel-rapl:1", name: "package-0-die-1", energy: 1)
        tree.zone("intel-rapl:1:0", name: "core", energy: 1)
        let backend = try SysfsBackend(paths: tree.paths)
        #expect(domains(backend) == ["package-0-die-0@0/0", "core@0/0", "package-0-die-1@0/1", "core@0/1"])
    }

    @Test func hexZoneIDsSortNumerically() throws {
        let tree = FakeTree()
        for n in 0..<12 {
            tree.zone("intel-rapl:\(String(n, radix: 16))", name: "package-\(n)", energy: UInt64(n))
        }
        tree.zone("intel-rapl:a:0", name: "dram", energy: 100)
        let backend = try SysfsBackend(paths: tree.paths)
        #expect(backend.counters.map(\.domain.socket) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 11])
        let dram = try #require(backend.counters.firstIndex { $0.domain == Domain(.dram, socket: 10) })
        #expect(backend.counters[dram].source.hasSuffix("intel-rapl:a:0/energy_uj"))
        #expect(try backend.read(dram).value == 100)
    }

    @Test func advancingCounterIsRereadFromTheOpenFileAndWraps() throws {
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0", energy: 999_000, max: 999_999)
        let backend = try SysfsBackend(paths: tree.paths)
        let meter = EnergyMeter(backend: backend)
        let t0 = Duration.zero
        meter.read(now: t0)
        tree.setEnergy("intel-rapl:0", 999_900)
        meter.read(now: t0 + .milliseconds(100))
        #expect(meter.totals == [900])
        tree.setEnergy("intel-rapl:0", 400)  // wrapped at max_energy_range_uj
        meter.read(now: t0 + .milliseconds(200))
        #expect(meter.totals == [900 + 100 + 400])
    }

    /// The counter parser of the read's fast path: digits with at most a final newline, up to 2^64 − 1.
    @Test func counterValuesParseExactlyAndAnythingElseIsRefused() {
        func parse(_ text: String) -> UInt64? { Array(text.utf8).withUnsafeBytes { SysfsBackend.parseDecimal($0) } }
        #expect(parse("0\n") == 0)
        #expect(parse("262143328850\n") == 262_143_328_850)
        #expect(parse("42") == 42)
        #expect(parse("9999999999999999999\n") == 9_999_999_999_999_999_999)
        #expect(parse("18446744073709551615\n") == UInt64.max)
        let tooLarge = ["18446744073709551616", "99999999999999999999", "123456789012345678901"]
        for bad in tooLarge + ["", "\n", "12\n3", "1 2", "-1", "+1", "1\n\n", "abc", "1x"] {
            #expect(parse(bad) == nil, "\(bad.debugDescription)")
        }
    }

    @Test func badFilesAreSkippedWithTheirPathAndRetried() throws {
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0", energy: 10)
        tree.zone("intel-rapl:0:0", name: "core", energy: 10)
        tree.zone("intel-rapl:0:1", name: "dram", energy: 10)
        tree.zone("intel-rapl:0:2", name: "uncore", energy: 10)
        tree.setEnergy("intel-rapl:0:0", 0)
        tree.write("sys/class/powercap/intel-rapl:0:0/energy_uj", "garbage\n")
        tree.write("sys/class/powercap/intel-rapl:0:1/energy_uj", "")
        tree.remove("sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/intel-rapl:0:2/energy_uj")
        let backend = try SysfsBackend(paths: tree.paths)
        #expect(throws: Never.self) { try backend.read(0) }
        let garbage = #expect(throws: CounterReadError.self) { try backend.read(1) }
        #expect(garbage?.message.contains("intel-rapl:0:0/energy_uj: not a counter value: \"garbage\"") == true)
        let empty = #expect(throws: CounterReadError.self) { try backend.read(2) }
        #expect(empty?.message.contains("intel-rapl:0:1/energy_uj: not a counter value: (empty)") == true)
        let missing = #expect(throws: CounterReadError.self) { try backend.read(3) }
        #expect(missing?.message.contains("intel-rapl:0:2/energy_uj") == true)
        #expect(missing?.message.contains("No such file") == true)

        // Through the meter: the good domain keeps working; the bad ones recover once fixed.
        let meter = EnergyMeter(backend: backend, retryAfter: .zero)
        let t0 = Duration.zero
        meter.read(now: t0)
        #expect(meter.statuses.filter { $0 == .ok }.count == 1)
        tree.write("sys/class/powercap/intel-rapl:0:0/energy_uj", "20\n")
        tree.write("sys/class/powercap/intel-rapl:0:1/energy_uj", "20\n")
        tree.write("sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/intel-rapl:0:2/energy_uj", "20\n")
        meter.read(now: t0 + .seconds(1))
        #expect(meter.statuses == [.ok, .ok, .ok, .ok])
    }

    @Test func missingNameIsRetriedByRefresh() throws {
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0", energy: 10)
        tree.zone("intel-rapl:1", name: nil, energy: 10)
        let backend = try SysfsBackend(paths: tree.paths)
        #expect(domains(backend) == ["package-0@0"])
        #expect(backend.refresh().contains { $0.contains("intel-rapl:1") && $0.contains("cannot read its name") })
        tree.setZoneFile("intel-rapl:1", "name", "package-1\n")
        let meter = EnergyMeter(backend: backend)
        meter.refresh()
        #expect(meter.domains == [Domain(.package, socket: 0), Domain(.package, socket: 1)])
    }

    @Test func nonNumericMaxEnergyRangeFailsThatDomainOnly() throws {
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0", energy: 10)
        tree.zone("intel-rapl:0:0", name: "dram", energy: 10)
        tree.setZoneFile("intel-rapl:0:0", "max_energy_range_uj", "lots\n")
        let backend = try SysfsBackend(paths: tree.paths)
        #expect(throws: Never.self) { try backend.read(0) }
        let error = #expect(throws: CounterReadError.self) { try backend.read(1) }
        #expect(error?.message.contains("intel-rapl:0:0/max_energy_range_uj: not a positive integer: \"lots\"") == true)
        tree.setZoneFile("intel-rapl:0:0", "max_energy_range_uj", "65532610987\n")
        #expect(try backend.read(1) == RawCount(value: 10, modulus: 65_532_610_988))
    }

    @Test func maskedDevicesTreeAsInDockerSaysHowToMountIt() {
        // Docker: class/powercap lists the symlinks, but devices/virtual/powercap is an empty tmpfs.
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0", energy: 1)
        tree.zone("intel-rapl:0:0", name: "core", energy: 1)
        tree.remove("sys/devices/virtual/powercap/intel-rapl")
        let error = #expect(throws: BackendUnavailable.self) { try SysfsBackend(paths: tree.paths) }
        #expect(error?.reason.contains("lists 2 zones but none can be read") == true)
        #expect(error?.fix.contains("Docker masks /sys/devices/virtual/powercap") == true)
    }

    @Test func noPowercapTreeSaysHowToMountIt() {
        let tree = FakeTree()
        tree.remove("sys/class/powercap")
        let error = #expect(throws: BackendUnavailable.self) { try SysfsBackend(paths: tree.paths) }
        #expect(error?.reason.contains("class/powercap") == true)
        #expect(error?.fix.contains("--sysfs-root /host/sys") == true)
    }
}
