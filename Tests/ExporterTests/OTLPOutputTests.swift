import RAPLBackend
import TestSupport
import Testing

@testable import Exporter

/// Output otlp: the standard OpenTelemetry variables, and OTLP/HTTP's retry rules and partial success.
@Suite struct OTLPOutputTests {
    func resolve(_ env: [String: String], _ flags: [SettingKey: String] = [:]) throws -> Settings {
        var cli = CommandLineValues()
        for (key, value) in flags { cli[key] = value }
        return try Settings.resolve(cli, environment: env)
    }

    @Test func theStandardVariablesConfigureIt() throws {
        let base = try resolve(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"])
        #expect(base.output == .otlp)
        #expect(base.endpoint?.description == "http://collector:4318/v1/metrics", "the base URL gets /v1/metrics")
        let rw = try #require(base.remoteWrite)
        #expect(rw.otlp?.gzip == false)
        #expect(rw.requestTimeout == .seconds(10))
        #expect(rw.series.cumulative && !rw.series.windowEnergy, "the energy as the cumulative sum only")
        #expect(rw.otlp?.resource.first.map { "\($0.0)=\($0.1)" } == "service.name=rapl-exporter")
        #expect(rw.otlp?.resource.contains { $0.0 == "host.name" && !$0.1.isEmpty } == true)

        let full = try resolve([
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://otlp.example.com/otlp/v1/metrics",
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization-Token=abc%3D%3D,X-Scope-OrgID=tenant-1",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=ignored,deployment.environment=lab%20one,host.name=node-7",
            "OTEL_SERVICE_NAME": "energy",
        ])
        #expect(full.endpoint?.description == "https://otlp.example.com:443/otlp/v1/metrics", "the metrics URL as given, and it wins")
        #expect(full.remoteWrite?.otlp?.gzip == true)
        #expect(full.remoteWrite?.requestTimeout == .milliseconds(2500))
        #expect(full.connection?.headers.map { "\($0.0)=\($0.1)" } == ["Authorization-Token=abc==", "X-Scope-OrgID=tenant-1"])
        #expect(
            full.remoteWrite?.otlp?.resource.map { "\($0.0)=\($0.1)" } == [
                "service.name=energy", "deployment.environment=lab one", "host.name=node-7",
            ], "OTEL_SERVICE_NAME wins; a host.name given is kept")
        #expect(
            try resolve(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TIMEOUT": "2500"], [.requestTimeout: "3"]).remoteWrite?
                .requestTimeout == .seconds(3))
    }

    @Test(arguments: [
        (["REMOTE_WRITE_URL": "http://p/w", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"], "one push output at a time"),
        (["OUTPUT": "otlp"], "output otlp needs OTEL_EXPORTER_OTLP_ENDPOINT"),
        (["OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"], "invalid OTLP endpoint"),
        (["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"], "invalid OTLP compression 'zstd'"),
        (["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"], "invalid OTLP header 'novalue'"),
        (
            ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "Content-Type=text/plain"],
            "header 'Content-Type' is set by rapl-exporter"
        ),
        (["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TIMEOUT": "-5"], "invalid otlp-timeout '-5'"),
        (["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_RESOURCE_ATTRIBUTES": "a=%zz"], "invalid resource attribute 'a=%zz'"),
        // Checked whatever the output.
        (["REMOTE_WRITE_URL": "http://p/w", "OTEL_EXPORTER_OTLP_COMPRESSION": "brotli"], "invalid OTLP compression 'brotli'"),
        (["OUTPUT": "stdout", "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"], "invalid OTLP endpoint"),
        (["OUTPUT": "stdout", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"], "invalid otlp-timeout 'soon'"),
    ])
    func badValuesAreRefusedWithOneLine(_ env: [String: String], _ message: String) {
        #expect {
            _ = try resolve(env)
        } throws: { error in
            (error as? ConfigurationError)?.description.contains(message) == true
        }
    }

    func writer(_ transport: RecordingTransport, clock: TestClock = TestClock(), logger: LogCapture = LogCapture(), gzip: Bool = false)
        -> RemoteWriter<TestClock>
    {
        var settings = RemoteWriteSettings(endpoint: RemoteWriteEndpoint("http://127.0.0.1:9/v1/metrics")!, pushInterval: .seconds(4))
        settings.otlp = OTLPSettings(gzip: gzip)
        settings.series.cumulative = true
        settings.series.windowEnergy = false
        return RemoteWriter(
            settings: settings, transport: transport, clock: clock, wallClock: TestWallClock(), random: { 0.5 }, logger: logger.logger)
    }

    @Test(arguments: [(429, true), (502, true), (503, true), (504, true), (500, false), (400, false), (401, false)])
    func retriesFollowOTLPsStatusCodes(_ status: Int, _ retried: Bool) async {
        // Three times: a refused request's energy and self-metrics are then tried apart (as with remote write).
        let answer = TransportResult.response(status: status, headers: [], body: [])
        let transport = RecordingTransport([answer, answer, answer], answer: .response(status: 200, headers: [], body: []))
        let clock = TestClock()
        let w = writer(transport, clock: clock)
        w.accept(window([1_000, 2_000], endMicros: 1_800_000_000_100_000))
        await w.cutBatch()
        await w.drain(until: nil)
        clock.advance(by: .seconds(1))
        await w.drain(until: nil)
        let stats = await w.statistics
        #expect(transport.wires.allSatisfy { $0 == .otlp })
        if retried {
            #expect(transport.bodies.count >= 2 && transport.bodies[0] == transport.bodies[1], "the same request again")
            #expect(stats.totalDropped == 0)
        } else {
            #expect(stats.dropped[.rejected] ?? 0 > 0, "HTTP \(status) is not retried")
            #expect(transport.bodies.dropFirst().allSatisfy { $0 != transport.bodies[0] }, "never the same request twice")
        }
    }

    @Test func aPartialSuccessIsCountedAndLoggedOnce() async {
        // ExportMetricsServiceResponse { partial_success { rejected_data_points: 2, error_message: "late" } }
        let partial: [UInt8] = [0x0A, 0x08, 0x08, 0x02, 0x12, 0x04] + Array("late".utf8)
        let transport = RecordingTransport(answer: .response(status: 200, headers: [], body: partial))
        let logger = LogCapture()
        let w = writer(transport, logger: logger, gzip: true)
        for i in 1...2 {
            w.accept(window([1_000], endMicros: 1_800_000_000_000_000 + Int64(i) * 100_000))
            await w.cutBatch()
            await w.drain(until: nil)
        }
        #expect(transport.wires == [.otlpGzip, .otlpGzip])
        #expect(transport.bodies.allSatisfy { $0.starts(with: [0x1F, 0x8B]) }, "gzip")
        #expect(await w.statistics.dropped[.rejected] == 4)
        #expect(logger.count("partial success: late") == 1, "once per episode")
        #expect(OTLPResponse.partialSuccess([]) == nil)
    }
}
