import Foundation
import RemoteWriteProtobuf
import SwiftProtobuf
import TestSupport
import Testing

@testable import Exporter

/// The hand-written remote-write encoder against the generated swift-protobuf types.
@Suite struct EncodingTests {
    /// What swift-protobuf serializes for the same samples: one TimeSeries per series in order of first
    /// appearance, samples in the order given.
    func reference(_ samples: [PendingSample], _ table: SeriesTable) throws -> [UInt8] {
        var order: [Int] = []
        var grouped: [Int: [Prometheus_Sample]] = [:]
        for s in samples {
            if grouped[s.series] == nil { order.append(s.series) }
            var sample = Prometheus_Sample()
            sample.value = s.value
            sample.timestamp = s.timestamp
            grouped[s.series, default: []].append(sample)
        }
        var request = Prometheus_WriteRequest()
        request.timeseries = order.map { series in
            var ts = Prometheus_TimeSeries()
            ts.labels = table.labels[series].map { pair in
                var label = Prometheus_Label()
                label.name = pair.name
                label.value = pair.value
                return label
            }
            ts.samples = grouped[series]!
            return ts
        }
        return try request.serializedBytes()
    }

    func table() -> (SeriesTable, [Int]) {
        var table = SeriesTable()
        let ids = [
            table.series("pyjoules_remote_write_energy_uj", [("component", "package-0"), ("socket", "0"), ("source", "cpu-pyjoules")]),
            table.series(
                "pyjoules_remote_write_energy_uj",
                [("component", "dram"), ("socket", "1"), ("die", "1"), ("source", "cpu-pyjoules"), ("host", "büro-ä")]),
            table.series("rapl_exporter_samples_dropped_total", [("reason", "queue_full"), ("empty", "")]),
            // A label value longer than 127 bytes: two-byte lengths in the label and the series.
            table.series("x", [("long", String(repeating: "v", count: 300))]),
        ]
        return (table, ids)
    }

    @Test func bytesAreIdenticalToSwiftProtobuf() throws {
        let (table, ids) = table()
        let edge: [Double] = [0, -0.0, 1, 123_456_789, Double(UInt64.max), .infinity, -.infinity, .nan, .leastNonzeroMagnitude, 0.1]
        let timestamps: [Int64] = [0, 1, 127, 128, 1_800_000_000_000, -1, .max, .min]
        var samples: [PendingSample] = []
        for (i, value) in edge.enumerated() {
            for (j, ts) in timestamps.enumerated() {
                samples.append(PendingSample(series: ids[(i + j) % ids.count], value: value, timestamp: ts))
            }
        }
        var encoder = RemoteWriteEncoder()
        let bytes = encoder.protobufBytes(samples[...], table: table)
        #expect(bytes == (try reference(samples, table)))
        // The labels the table keeps: sorted, __name__ first, empty values left out.
        #expect(table.labels[ids[2]].map(\.name) == ["__name__", "reason"])
        #expect(table.labels[ids[1]].map(\.name) == ["__name__", "component", "die", "host", "socket", "source"])
    }

    @Test func reusedBuffersCarryNothingOver() throws {
        let (table, ids) = table()
        var encoder = RemoteWriteEncoder()
        func batch(_ n: Int, _ seed: Int) -> [PendingSample] {
            (0..<n).map {
                PendingSample(series: ids[($0 * 7 + seed) % ids.count], value: Double($0 * seed), timestamp: 1_800_000_000_000 + Int64($0))
            }
        }
        // Large, then small, then empty, then a slice from the middle of a batch.
        for samples in [batch(5000, 3), batch(3, 5), [], batch(40, 7)] {
            #expect(encoder.protobufBytes(samples[...], table: table) == (try reference(samples, table)))
        }
        let big = batch(100, 11)
        #expect(encoder.protobufBytes(big[10..<60], table: table) == (try reference(Array(big[10..<60]), table)))
        // The compressed body decodes to the same request.
        let body = encoder.encode(big[...], table: table)
        let decoded = try Prometheus_WriteRequest(serializedBytes: Snappy.uncompress(body)!)
        #expect(try decoded.serializedBytes() == (try reference(big, table)))
        #expect(decoded.timeseries.map { $0.samples.count }.reduce(0, +) == 100)
    }

    /// The remote write 2.0 request against the types protoc generates from Protos/remote_v2.proto, with
    /// Google's protobuf runtime (Python): byte for byte, for edge-case values and timestamps, series whose
    /// strings repeat (one symbol each), and a second request after the buffers have grown.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/protoc") && FileManager.default.isExecutableFile(atPath: Self.python)))
    func remoteWrite2BytesAreIdenticalToTheGeneratedTypes() async throws {
        var (table, ids) = table()
        let cumulative = table.series(
            "rapl_energy_joules_total", [("component", "package-0"), ("socket", "0"), ("source", "cpu-pyjoules")])
        let energy = table.series(
            "pyjoules_remote_write_energy_uj", [("component", "core"), ("socket", "0"), ("source", "cpu-pyjoules")], metadata: .windowEnergy)
        #expect(table.symbols.first == "", "the spec: symbols start with the empty string")
        #expect(Set(table.symbols).count == table.symbols.count, "each string once")
        let directory = NSTemporaryDirectory() + "rapl-rw2-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let protoc = try await Binary.run(
            "/usr/bin/protoc", ["--python_out=\(directory)", "-I", Self.root + "/Protos", Self.root + "/Protos/remote_v2.proto"])
        try #require(protoc.status == 0, "\(protoc.stderr)")
        let edge: [Double] = [0, -0.0, 1, 123_456_789, .infinity, -.infinity, .leastNonzeroMagnitude, 0.1]
        let timestamps: [Int64] = [0, 1, 127, 128, 1_800_000_000_000, -1, .max, .min]
        var samples: [PendingSample] = []
        let all = ids + [cumulative, energy]
        for (i, value) in edge.enumerated() {
            for (j, ts) in timestamps.enumerated() { samples.append(PendingSample(series: all[(i + j) % all.count], value: value, timestamp: ts)) }
        }
        var encoder = RemoteWriteEncoder()
        _ = encoder.protobufBytes(samples[...], table: table, wire: .v1)  // the buffers grown by the other wire
        for batch in [samples[...], samples[5..<9]] {
            let bytes = encoder.protobufBytes(batch, table: table, wire: .v2)
            var order: [Int] = []
            for s in batch where !order.contains(s.series) { order.append(s.series) }
            let series: [[String: Any]] = order.map { id in
                let refs = table.labels[id].flatMap { [$0.name, $0.value] }.map { table.symbols.firstIndex(of: $0)! }
                let meta = table.metadata[id]
                return [
                    "refs": refs,
                    "samples": batch.filter { $0.series == id }.map { s in
                        [withUnsafeBytes(of: s.value.bitPattern.littleEndian) { $0.map { String(format: "%02x", $0) }.joined() }, s.timestamp]
                            as [Any]
                    },
                    "type": Int(meta.kind.rawValue), "help": table.symbols.firstIndex(of: meta.help)!,
                    "unit": table.symbols.firstIndex(of: meta.unit)!,
                ]
            }
            let expected = directory + "/expected.json"
            let encoded = directory + "/encoded.bin"
            try JSONSerialization.data(withJSONObject: ["symbols": table.symbols, "series": series]).write(to: URL(fileURLWithPath: expected))
            try Data(bytes).write(to: URL(fileURLWithPath: encoded))
            let check = try await Binary.run(Self.python, [Self.root + "/Tests/Python/remote_write_v2_reference.py", directory, expected, encoded])
            #expect(check.status == 0 && check.stdout.contains("identical"), "\(check.stdout)\(check.stderr)")
        }
        #expect(table.metadata[cumulative] == MetricMetadata(.counter, MetricMetadata.help("rapl_energy_joules_total"), unit: "joules"))
        #expect(table.metadata[energy].kind == .gauge)
        // The snappy body decodes to the same message.
        let body = encoder.encode(samples[...], table: table, wire: .v2)
        #expect(Snappy.uncompress(body)! == encoder.protobufBytes(samples[...], table: table, wire: .v2))
    }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let python = root + "/.build-receivers/venv/bin/python"

    @Test func varintSizes() {
        for (value, size) in [(UInt64(0), 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (UInt64(Int64.max), 9), (UInt64.max, 10)] {
            #expect(Protobuf.varintSize(value) == size, "\(value)")
            var bytes: [UInt8] = []
            Protobuf.appendVarint(value, to: &bytes)
            #expect(bytes.count == size)
        }
        // The 8-byte-word varint holds what the byte loop writes, around every 7-bit boundary.
        var values: [UInt64] = [0, UInt64.max, 1_800_000_000_000]
        for bits in 1...64 { values += [(1 << UInt64(bits - 1)) - 1, 1 << UInt64(bits - 1), (1 << UInt64(bits - 1)) + 1] }
        let wide = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
        let loop = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
        defer {
            wide.deallocate()
            loop.deallocate()
        }
        for value in values {
            let n = Protobuf.putVarint(value, loop, 3) - 3
            #expect(n == Protobuf.varintSize(value))
            guard let (word, size) = Protobuf.wideVarint(value) else {
                #expect(value >= 1 << 56, "\(value)")
                continue
            }
            wide.storeBytes(of: word, toByteOffset: 3, as: UInt64.self)
            #expect(size == n, "\(value)")
            #expect(memcmp(wide + 3, loop + 3, n) == 0, "\(value)")
        }
    }
}
