import RAPLBackend
import TestSupport
import Testing

@testable import Exporter

/// `--remote-write-protocol`: 2.0 requests, and `auto`'s fallback to 1.0 — the request that shows the
/// receiver does not take 2.0 goes again, with the same samples, as 1.0; nothing lost, nothing twice.
@Suite struct RemoteWriteProtocolTests {
    let endpoint = RemoteWriteEndpoint("http://127.0.0.1:9/api/v1/write")!
    /// How a 2.0 receiver answers: 204 with the Written headers.
    static let written = TransportResult.response(
        status: 204, headers: [("X-Prometheus-Remote-Write-Samples-Written", "999999"), ("X-Prometheus-Remote-Write-Histograms-Written", "0")],
        body: [])

    func writer(
        _ transport: RecordingTransport, _ choice: RemoteWriteProtocol, clock: TestClock = TestClock(), logger: LogCapture = LogCapture()
    ) -> RemoteWriter<TestClock> {
        var settings = RemoteWriteSettings(endpoint: endpoint, pushInterval: .seconds(4))
        settings.wireProtocol = choice
        settings.series.cumulative = true
        settings.protocolRetryInterval = .seconds(60)
        return RemoteWriter(
            settings: settings, transport: transport, clock: clock, wallClock: TestWallClock(), random: { 0.5 }, logger: logger.logger)
    }

    func push(_ w: RemoteWriter<TestClock>, _ values: [UInt64?], at micros: Int64) async {
        w.accept(window(values, endMicros: micros))
        await w.cutBatch()
        await w.drain(until: nil)
    }

    /// Every sample of a request, as (labels, timestamp, value), in a stable order.
    func content(_ body: [UInt8], _ wire: RemoteWriteWire) -> [String] {
        let bytes = Snappy.uncompress(body)!
        switch wire {
        case .v1:
            return RecordingTransport.decode(body).timeseries.flatMap { ts in
                let labels = ts.labels.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
                return ts.samples.map { "\(labels) \($0.timestamp) \($0.value)" }
            }.sorted()
        case .v2, .otlp, .otlpGzip:
            return RemoteWrite2Request(bytes)!.series.flatMap { s in
                let labels = s.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                return s.samples.map { "\(labels) \($0.timestamp) \($0.value)" }
            }.sorted()
        }
    }

    @Test func a2Point0RequestCarriesMetadataAndTheSameSamples() async throws {
        let transport = RecordingTransport(answer: Self.written)
        let w = writer(transport, .v2)
        await push(w, [1_500_000, 700], at: 1_800_000_000_100_000)
        #expect(transport.wires == [.v2])
        let request = try #require(RemoteWrite2Request(Snappy.uncompress(transport.bodies[0])!))
        #expect(request.symbols.first == "")
        let energy = try #require(
            request.series.first { $0.labels["__name__"] == "pyjoules_remote_write_energy_uj" && $0.labels["component"] == "package-0" })
        #expect(energy.samples.map(\.value) == [1_500_000])
        #expect(energy.type == 2, "the per-window energy is a gauge")
        #expect(energy.labels == ["__name__": "pyjoules_remote_write_energy_uj", "component": "package-0", "socket": "0", "source": "cpu-pyjoules"])
        let total = try #require(
            request.series.first { $0.labels["__name__"] == "rapl_energy_joules_total" && $0.labels["component"] == "package-0" })
        #expect(total.type == 1 && total.unit == "joules" && total.samples.map(\.value) == [1.5])
        let sent = try #require(request.series.first { $0.labels["__name__"] == "rapl_exporter_samples_sent_total" })
        #expect(sent.type == 1 && !sent.help.isEmpty)
        #expect(request.series.allSatisfy { $0.type != 0 && !$0.help.isEmpty }, "metadata for every series")
        let stats = await w.statistics
        #expect(stats.sent == UInt64(request.series.reduce(0) { $0 + $1.samples.count }))
        #expect(await w.wire == .v2)
    }

    @Test(arguments: [
        (TransportResult.response(status: 415, headers: [], body: Array("unsupported".utf8)), "HTTP 415"),
        (.response(status: 204, headers: [], body: []), "HTTP 204 without X-Prometheus-Remote-Write-Samples-Written"),
        (.response(status: 200, headers: [], body: []), "HTTP 200 without X-Prometheus-Remote-Write-Samples-Written"),
        (.response(status: 400, headers: [], body: Array("cannot parse".utf8)), "HTTP 400 to the first 2.0 request"),
    ])
    func autoFallsBackWithTheSameSamplesOnce(_ answer: TransportResult, _ why: String) async throws {
        let transport = RecordingTransport([answer])
        let logger = LogCapture()
        let w = writer(transport, .auto, logger: logger)
        await push(w, [1_500_000, 700], at: 1_800_000_000_100_000)
        #expect(transport.wires == [.v2, .v1])
        #expect(content(transport.bodies[0], .v2) == content(transport.bodies[1], .v1), "the same samples, as 1.0")
        let stats = await w.statistics
        #expect(stats.sent == UInt64(content(transport.bodies[1], .v1).count), "counted once")
        #expect(stats.totalDropped == 0)
        #expect(logger.contains("receiver does not take remote write 2.0 (\(why)"))
        // And 1.0 from then on.
        await push(w, [2_000_000, 800], at: 1_800_000_000_200_000)
        #expect(transport.wires == [.v2, .v1, .v1])
    }

    @Test func a400AfterA2Point0RequestWasAcceptedIsAboutTheSamples() async {
        let transport = RecordingTransport(
            [Self.written, .response(status: 400, headers: [], body: Array("out of bounds".utf8))], answer: Self.written)
        let w = writer(transport, .auto)
        await push(w, [1_000], at: 1_800_000_000_100_000)
        await push(w, [2_000], at: 1_800_000_000_200_000)
        // The 400: energy and self-metrics are sent apart (as with 1.0), still as 2.0.
        #expect(transport.wires.allSatisfy { $0 == .v2 }, "\(transport.wires)")
        #expect(await w.wire == .v2)
    }

    @Test func explicit2Point0DropsWhatAReceiverWithout2Point0Answers() async {
        let transport = RecordingTransport([.response(status: 415, headers: [], body: [])])
        let logger = LogCapture()
        let w = writer(transport, .v2, logger: logger)
        await push(w, [1_000], at: 1_800_000_000_100_000)
        #expect(transport.wires == [.v2])
        let stats = await w.statistics
        #expect(stats.dropped[.rejected] == UInt64(content(transport.bodies[0], .v2).count))
        #expect(logger.contains("use --remote-write-protocol auto or 1.0"))
    }

    @Test func autoTries2Point0AgainAfterTheInterval() async {
        let transport = RecordingTransport([.response(status: 415, headers: [], body: [])], answer: Self.written)
        let clock = TestClock()
        let w = writer(transport, .auto, clock: clock)
        await push(w, [1_000], at: 1_800_000_000_100_000)
        clock.advance(by: .seconds(59))
        await push(w, [2_000], at: 1_800_000_000_200_000)
        #expect(transport.wires == [.v2, .v1, .v1])
        clock.advance(by: .seconds(1))
        await push(w, [3_000], at: 1_800_000_000_300_000)
        #expect(transport.wires == [.v2, .v1, .v1, .v2], "an upgraded receiver gets 2.0 again")
        #expect(await w.wire == .v2)
    }

    @Test func retriesKeepTheProtocolAndASampleShortfallIsCounted() async {
        let partial = TransportResult.response(status: 204, headers: [("X-Prometheus-Remote-Write-Samples-Written", "3")], body: [])
        let transport = RecordingTransport([.response(status: 503, headers: [], body: []), partial], answer: Self.written)
        let clock = TestClock()
        let logger = LogCapture()
        let w = writer(transport, .auto, clock: clock, logger: logger)
        await push(w, [1_000], at: 1_800_000_000_100_000)
        clock.advance(by: .milliseconds(500))
        await w.drain(until: nil)
        #expect(transport.wires == [.v2, .v2])
        #expect(transport.bodies[0] == transport.bodies[1])
        let count = UInt64(content(transport.bodies[1], .v2).count)
        let stats = await w.statistics
        #expect(stats.sent == 3)
        #expect(stats.dropped[.rejected] == count - 3)
        #expect(logger.contains("receiver stored 3 of the \(count) samples"))
    }
}
