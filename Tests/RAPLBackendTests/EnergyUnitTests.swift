import TestSupport
import Testing

@testable import RAPLBackend

@Suite struct EnergyUnitTests {
    @Test func perfScaleIsParsedExactly() throws {
        // 2^-32 J = 2.3283064365386962890625e-10 J exactly; in µJ that is 15625 / 2^26.
        let unit = try #require(EnergyUnit(decimalJoules: "2.3283064365386962890625e-10\n"))
        #expect(unit.numerator == 15625)
        #expect(unit.denominator == UInt128(1) << 26)
        #expect(unit.description.hasPrefix("2^-32 J"))
    }

    @Test func decimalForms() throws {
        #expect(try #require(EnergyUnit(decimalJoules: "1e-6")) == .microjoule)
        #expect(try #require(EnergyUnit(decimalJoules: "0.000001")) == .microjoule)
        #expect(EnergyUnit(decimalJoules: "1") == EnergyUnit(numerator: 1_000_000, denominator: 1))
        #expect(try #require(EnergyUnit(decimalJoules: "6.103515625e-05")) == .joulesPowerOfTwo(14))
        for bad in ["", "abc", "1.2.3", "e-5", "1e", "-1e-5", "1e999", " "] {
            #expect(EnergyUnit(decimalJoules: bad) == nil, "\(bad) should be rejected")
        }
    }

    @Test func esuUnits() {
        #expect(EnergyUnit.joulesPowerOfTwo(14).microjoulesPerCount == 61.03515625)
        #expect(EnergyUnit.joulesPowerOfTwo(16).microjoulesPerCount == 15.2587890625)
        #expect(EnergyUnit.joulesPowerOfTwo(0).description == "1 J")
    }

    @Test func conversionIsExactFloorOfTheRawTotal() {
        let unit = EnergyUnit(decimalJoules: "2.3283064365386962890625e-10")!
        // 2^32 counts = 1 J exactly.
        #expect(unit.microjoules(UInt128(1) << 32) == 1_000_000)
        // One count less is floor(999999.99976…) = 999999.
        #expect(unit.microjoules((UInt128(1) << 32) - 1) == 999_999)
        // Beyond 64 bits of raw total (a long run of a 64-bit perf counter) stays exact.
        let big = (UInt128(1) << 70) + 12345
        let expected = (big * 15625) / (UInt128(1) << 26)
        #expect(UInt128(unit.microjoules(big)) == expected)
    }

    @Test func shiftAndDivisionPathsAgree() {
        // Power-of-two denominators take a shift; others the full-width division.
        let shifted = EnergyUnit.joulesPowerOfTwo(14)
        let divided = EnergyUnit(numerator: 3, denominator: 7)!
        for raw in [UInt128(0), 1, 255, 256, 1_000_003, UInt128(UInt64.max), (UInt128(1) << 100) + 77] {
            let p = UInt128(15625) * raw
            #expect(UInt128(shifted.microjoules(raw)) == min(p >> 8, UInt128(UInt64.max)))
            #expect(UInt128(divided.microjoules(raw)) == min(raw * 3 / 7, UInt128(UInt64.max)))
        }
    }

    @Test func windowDeltasOfTheTotalAddUpExactly() {
        // Converting each delta would lose up to one µJ per window; converting the total does not.
        let unit = EnergyUnit.joulesPowerOfTwo(14)  // 61.03515625 µJ per count
        var raw: UInt128 = 0
        var previous: UInt64 = 0
        var sumOfWindows: UInt64 = 0
        var sumOfRoundedDeltas: UInt64 = 0
        for step in 1...1000 {
            let delta = UInt128(step % 7 + 1)
            raw += delta
            let total = unit.microjoules(raw)
            sumOfWindows += total - previous
            previous = total
            sumOfRoundedDeltas += unit.microjoules(delta)
        }
        #expect(sumOfWindows == unit.microjoules(raw))
        #expect(sumOfRoundedDeltas < sumOfWindows)
    }
}

@Suite struct NamingTests {
    @Test func seedAndPyJoulesNames() {
        #expect(Domain(.package, socket: 1).component(.seed) == "package-1")
        #expect(Domain(.core, socket: 1).component(.seed) == "core")
        #expect(Domain(.package, socket: 0, die: 1).component(.seed) == "package-0-die-1")
        #expect(Domain(.package, socket: 0).component(.pyjoules) == "package_0")
        #expect(Domain(.dram, socket: 1).component(.pyjoules) == "dram_1")
        #expect(Domain(.uncore, socket: 0).component(.pyjoules) == "uncore_0")
    }

    @Test func cpuLists() {
        #expect(Topology.parseCPUList("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11])
        #expect(Topology.parseCPUList("0,18") == [0, 18])
        #expect(Topology.parseCPUList("x") == nil)
        #expect(Topology.parseCPUList("3-1") == nil)
    }
}
