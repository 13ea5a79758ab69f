import Testing

@testable import Exporter

@Suite struct SnappyTests {
    @Test func roundTripsThroughLibsnappy() throws {
        let input = Array("pyjoules_remote_write_energy_uj package-0 core uncore dram psys".utf8) + [UInt8](repeating: 7, count: 1000)
        let compressed = Snappy.compress(input)
        #expect(compressed.count < input.count)
        #expect(Snappy.uncompress(compressed) == input)
    }

    @Test func emptyInputAndGarbage() {
        #expect(Snappy.uncompress(Snappy.compress([])) == [])
        #expect(Snappy.uncompress([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) == nil)
    }
}
