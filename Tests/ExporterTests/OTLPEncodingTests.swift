import Foundation
import TestSupport
import Testing

@testable import Exporter

/// The OTLP encoder against the generated types of the `opentelemetry-proto` package: they parse what it
/// writes and serialise it back to the same bytes, and what they read is what OTLP's spec and the hardware
/// semantic conventions say.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: EncodingTests.python), "run scripts/install-receivers"))
struct OTLPEncodingTests {
    func decode(_ bytes: [UInt8]) async throws -> (identical: Bool, request: [String: Any]) {
        let path = NSTemporaryDirectory() + "rapl-otlp-\(UUID().uuidString).bin"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try await Binary.run(EncodingTests.python, [EncodingTests.root + "/Tests/Python/otlp_reference.py", path])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stderr)")
        return (json["identical"] as? Bool ?? false, json["request"] as? [String: Any] ?? [:])
    }

    @Test func energyIsACumulativeMonotonicSumInJoulesWithTheHardwareAttributes() async throws {
        var table = SeriesTable()
        let labels = [("component", "package-0"), ("socket", "1"), ("source", "cpu-pyjoules"), ("node", "web-1")]
        let window = table.series("pyjoules_remote_write_energy_uj", labels, metadata: .windowEnergy)
        let total = table.series("rapl_energy_joules_total", labels)
        let dram = table.series("rapl_energy_joules_total", [("component", "dram"), ("socket", "0"), ("source", "cpu-pyjoules")])
        let sent = table.series("rapl_exporter_samples_sent_total", [("source", "cpu-pyjoules")])
        let pending = table.series("rapl_exporter_samples_pending", [("source", "cpu-pyjoules")])
        let samples = [
            PendingSample(series: window, value: 1_500_000, timestamp: 1_800_000_000_100),
            PendingSample(series: total, value: 1.5, timestamp: 1_800_000_000_100),
            PendingSample(series: dram, value: 0.25, timestamp: 1_800_000_000_100),
            PendingSample(series: total, value: 3.000001, timestamp: 1_800_000_000_200),
            PendingSample(series: sent, value: 42, timestamp: 1_800_000_000_250),
            PendingSample(series: pending, value: 0, timestamp: 1_800_000_000_250),
        ]
        let encoder = OTLPEncoder(
            resource: [("service.name", "rapl-exporter"), ("host.name", "web-1"), ("deployment.environment", "lab")], scopeVersion: "1.2.3",
            startNanoseconds: 1_799_999_000_000_000_000)
        let (identical, request) = try await decode(encoder.encode(samples[...], table: table))
        #expect(identical, "the generated types serialise what they parsed to the same bytes")
        let resourceMetrics = try #require((request["resource_metrics"] as? [[String: Any]])?.first)
        let resource = try #require((resourceMetrics["resource"] as? [String: Any])?["attributes"] as? [[String: Any]])
        #expect(resource.map { $0["key"] as? String } == ["service.name", "host.name", "deployment.environment"])
        let scopeMetrics = try #require((resourceMetrics["scope_metrics"] as? [[String: Any]])?.first)
        #expect((scopeMetrics["scope"] as? [String: Any])?["name"] as? String == "rapl-exporter")
        #expect((scopeMetrics["scope"] as? [String: Any])?["version"] as? String == "1.2.3")
        let metrics = try #require(scopeMetrics["metrics"] as? [[String: Any]])
        #expect(
            metrics.map { $0["name"] as? String } == ["hw.energy", "rapl_exporter_samples_sent", "rapl_exporter_samples_pending"],
            "no per-window µJ series")
        let energy = metrics[0]
        #expect(energy["unit"] as? String == "J")
        let sum = try #require(energy["sum"] as? [String: Any])
        #expect(sum["aggregation_temporality"] as? String == "AGGREGATION_TEMPORALITY_CUMULATIVE")
        #expect(sum["is_monotonic"] as? Bool == true)
        let points = try #require(sum["data_points"] as? [[String: Any]])
        #expect(points.map { $0["as_double"] as? Double } == [1.5, 0.25, 3.000001])
        #expect(points.allSatisfy { $0["start_time_unix_nano"] as? String == "1799999000000000000" }, "start time: the exporter's start")
        #expect(points.map { $0["time_unix_nano"] as? String } == ["1800000000100000000", "1800000000100000000", "1800000000200000000"])
        func attributes(_ point: [String: Any]) -> [String: String] {
            Dictionary(
                uniqueKeysWithValues: (point["attributes"] as? [[String: Any]] ?? []).map {
                    ($0["key"] as! String, ($0["value"] as? [String: Any])?["string_value"] as? String ?? "")
                })
        }
        #expect(
            attributes(points[0]) == [
                "hw.id": "rapl:1:package-0", "hw.type": "cpu", "hw.name": "package-0", "component": "package-0", "socket": "1",
                "source": "cpu-pyjoules", "node": "web-1",
            ])
        #expect(attributes(points[1])["hw.type"] == "memory")
        #expect(metrics[1]["sum"] != nil && metrics[2]["gauge"] != nil, "counters are sums, gauges gauges")
        let gaugePoint = try #require(((metrics[2]["gauge"] as? [String: Any])?["data_points"] as? [[String: Any]])?.first)
        #expect(gaugePoint["start_time_unix_nano"] == nil && gaugePoint["as_double"] as? Double == 0, "a zero value is still sent")
    }
}
