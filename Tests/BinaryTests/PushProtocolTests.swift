import Foundation
import TestSupport
import Testing

@testable import Exporter

/// Remote write 2.0 and OTLP through the daemon and a scripted HTTP receiver: the headers each protocol
/// sends, a retryable answer retried with the same request, and (OTLP) what the official
/// opentelemetry-proto types read from the wire.
@Suite struct PushProtocolTests {
    func run(_ receiver: ScriptedReceiver, _ args: [String]) async throws -> Daemon {
        let tree = FakeTree.powercap()
        let daemon = try Daemon(tree.sysfsArguments + ["--scrape-interval", "0.05", "--push-interval", "0.3", "--duration", "60"] + args)
        try await waitUntil("three requests") { receiver.requests.count >= 3 }
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        await receiver.shutdown()
        return daemon
    }

    @Test func remoteWrite2SendsItsHeadersAndRetriesTheSameRequest() async throws {
        let written = ScriptedReceiver.Action.respond(204, [("X-Prometheus-Remote-Write-Samples-Written", "100000")], "")
        let receiver = try await ScriptedReceiver([.respond(503, [("Retry-After", "0")], "busy")], answer: written)
        let daemon = try await run(receiver, ["--remote-write-url", receiver.url, "--remote-write-protocol", "2.0"])
        let requests = receiver.requests
        #expect(requests[0].body == requests[1].body, "the 503'd request again, unchanged")
        for request in requests {
            #expect(request.header("Content-Type") == "application/x-protobuf;proto=io.prometheus.write.v2.Request")
            #expect(request.header("X-Prometheus-Remote-Write-Version") == "2.0.0")
            #expect(request.header("Content-Encoding") == "snappy")
        }
        let decoded = try #require(RemoteWrite2Request(Snappy.uncompress(requests[1].body)!))
        #expect(decoded.series.contains { $0.labels["__name__"] == "pyjoules_remote_write_energy_uj" && $0.type == 2 })
        #expect(!daemon.log.contains("does not take remote write 2.0"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: EncodingTestsPaths.python), "run scripts/install-receivers"))
    func otlpSendsGzipProtobufRetriesAndReadsAsTheSpecSays() async throws {
        let receiver = try await ScriptedReceiver(
            [.respond(503, [("Retry-After", "0")], "busy"), .respond(500, [], "cannot")], answer: .respond(200, [], ""))
        let endpoint = receiver.url.replacingOccurrences(of: "/api/v1/write", with: "/v1/metrics")
        let daemon = try await run(
            receiver,
            [
                "--otlp-metrics-endpoint", endpoint, "--otlp-compression", "gzip", "--otel-service-name", "energy-lab",
                "--otel-resource-attributes", "deployment.environment=lab",
            ])
        let requests = receiver.requests
        #expect(requests[0].body == requests[1].body, "503 is retried with the same request")
        #expect(requests[2].body != requests[1].body, "500 is not retried (OTLP/HTTP)")
        #expect(daemon.log.contains("not retryable in OTLP"), "\(daemon.log)")
        for request in requests {
            #expect(request.header("Content-Type") == "application/x-protobuf")
            #expect(request.header("Content-Encoding") == "gzip")
            #expect(request.header("X-Prometheus-Remote-Write-Version") == nil)
        }
        var starts: Set<String> = []
        var withEnergy = 0
        for request in requests {
            let path = NSTemporaryDirectory() + "rapl-otlp-\(UUID().uuidString).bin"
            try Data(request.body).write(to: URL(fileURLWithPath: path))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = try await Binary.run(EncodingTestsPaths.python, [EncodingTestsPaths.root + "/Tests/Python/otlp_reference.py", path])
            let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stderr)")
            #expect(json["identical"] as? Bool == true)
            let resourceMetrics = try #require(((json["request"] as? [String: Any])?["resource_metrics"] as? [[String: Any]])?.first)
            let attributes = ((resourceMetrics["resource"] as? [String: Any])?["attributes"] as? [[String: Any]] ?? []).map {
                "\($0["key"] as! String)=\((($0["value"] as? [String: Any])?["string_value"] as? String) ?? "")"
            }
            #expect(attributes.first == "service.name=energy-lab")
            #expect(attributes.contains("deployment.environment=lab"))
            let metrics = try #require((resourceMetrics["scope_metrics"] as? [[String: Any]])?.first?["metrics"] as? [[String: Any]])
            #expect(!metrics.contains { $0["name"] as? String == "pyjoules_remote_write_energy_uj" })
            // (A refused request's energy and self-metrics go apart: some requests carry no energy.)
            guard let energy = metrics.first(where: { $0["name"] as? String == "hw.energy" }) else { continue }
            withEnergy += 1
            let points = try #require((energy["sum"] as? [String: Any])?["data_points"] as? [[String: Any]])
            starts.formUnion(points.compactMap { $0["start_time_unix_nano"] as? String })
        }
        #expect(withEnergy >= 2)
        #expect(starts.count == 1, "one start time: the exporter's start, \(starts)")
    }
}

/// The reference interpreter (scripts/install-receivers' venv) and the repository root.
enum EncodingTestsPaths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let python = root + "/.build-receivers/venv/bin/python"
}
