import RAPLBackend
import TestSupport
import Testing

@testable import Exporter

/// What /metrics reports is the sum of the windows, and the sampling thread never waits for a scrape.
@Suite struct ScrapeStateTests {
    func window(_ domains: [Domain], _ energy: [UInt64?], end: Int64) -> EnergyWindow {
        EnergyWindow(
            startMicroseconds: end - 100, endMicroseconds: end, duration: .microseconds(100), domains: domains, energy: energy,
            stuck: domains.map { _ in false }, readErrors: domains.map { _ in 1 }, glitches: domains.map { _ in 0 }, lateWindows: 3,
            missedWindows: 0, clockSteps: 0, clockStepMicroseconds: 0)
    }

    func figures(_ state: ScrapeState) -> ScrapeFigures {
        var f = ScrapeFigures()
        state.read(into: &f)
        return f
    }

    @Test func totalsAreTheSumOfTheWindowsAndANewDomainStartsAtZero() {
        let state = ScrapeState()
        let pkg = Domain(.package, socket: 0)
        let dram = Domain(.dram, socket: 0)
        state.accept(window([pkg], [100], end: 1))
        state.accept(window([pkg], [nil], end: 2))  // no energy for a glitch or a failed read
        state.accept(window([pkg, dram], [50, 7], end: 3))
        let f = figures(state)
        #expect(f.domains == [pkg, dram])
        #expect(f.totals == [150, 7])
        #expect(f.windows == 3)
        #expect(f.lateWindows == 3)
        #expect(f.readErrors == [1, 1])
        #expect(f.lastWindowMicroseconds == 3)
    }

    @Test func aWindowClosedDuringAScrapeIsPublishedWithTheNextOne() {
        let state = ScrapeState()
        let pkg = Domain(.package, socket: 0)
        state.accept(window([pkg], [10], end: 1))
        state.whileScraping {
            // The sampling thread does not wait: it keeps the window for the next publication.
            state.accept(window([pkg], [20], end: 2))
        }
        #expect(state.deferredPublications == 1)
        #expect(figures(state).totals == [10])
        state.accept(window([pkg], [30], end: 3))
        #expect(figures(state).totals == [60])
        #expect(figures(state).windows == 3)
    }

    @Test func theWriterPublishesItsCountersForTheEndpoint() async {
        let state = ScrapeState()
        let transport = RecordingTransport(Array(repeating: .response(status: 400, headers: [], body: []), count: 3))
        let settings = RemoteWriteSettings(endpoint: RemoteWriteEndpoint("http://127.0.0.1:9/w")!, pushInterval: .seconds(4))
        let writer = RemoteWriter(settings: settings, transport: transport, clock: TestClock(), wallClock: TestWallClock(), scrape: state)
        #expect(state.pushFigures == nil)
        writer.accept(window([Domain(.package, socket: 0)], [5], end: 1_800_000_000_000_000))
        await writer.cutBatch()
        #expect(state.pushFigures?.pending ?? 0 > 0)
        await writer.drain(until: nil)
        let figures = state.pushFigures
        #expect(figures?.requests == UInt64(transport.requests.count))
        #expect(figures?.sent == (await writer.statistics.sent))
        #expect((figures?.dropped.first { $0.reason == "rejected" }?.samples ?? 0) > 0)
        #expect(figures?.pending == 0)
        var text = ScrapeFigures()
        state.read(into: &text)
        let context = ScrapeContext(nameStyle: .seed, version: "v", backend: "sysfs", startTimeSeconds: 0, process: nil, push: figures)
        let body = String(decoding: Exposition.render(text, context, format: .prometheusText), as: UTF8.self)
        #expect(body.contains("rapl_exporter_samples_dropped_total{reason=\"rejected\"} \(figures?.dropped[0].samples ?? 0)\n"))
        #expect(body.contains("rapl_exporter_requests_total \(figures?.requests ?? 0)\n"))
        #expect(!body.contains("rapl_exporter_spool"))
    }

    /// With a spool, /metrics shows its figures too (beside pushing).
    @Test func theSpoolsFiguresAreServedToo() async throws {
        let dir = TempDirectory()
        let state = ScrapeState()
        let settings = RemoteWriteSettings(endpoint: RemoteWriteEndpoint("http://127.0.0.1:9/w")!, pushInterval: .seconds(4))
        let spool = try Spool.open(SpoolSettings(directory: dir.spool))
        let writer = RemoteWriter(
            settings: settings, transport: RecordingTransport(), clock: TestClock(), wallClock: TestWallClock(), scrape: state, spool: spool)
        var first = window([Domain(.package, socket: 0)], [5], end: 1_800_000_000_000_000)
        first.restart = .gap
        writer.accept(first)
        await writer.cutBatch()
        await writer.drain(until: nil)
        var text = ScrapeFigures()
        state.read(into: &text)
        let context = ScrapeContext(nameStyle: .seed, version: "v", backend: "sysfs", startTimeSeconds: 0, process: nil, push: state.pushFigures)
        let body = String(decoding: Exposition.render(text, context, format: .prometheusText), as: UTF8.self)
        #expect(body.contains("# TYPE rapl_exporter_spool_writable gauge\nrapl_exporter_spool_writable 1\n"))
        #expect(body.contains("# TYPE rapl_exporter_restart_gaps_total counter\nrapl_exporter_restart_gaps_total 1\n"))
        #expect(body.contains("rapl_exporter_spool_bytes "))
        let open = String(decoding: Exposition.render(text, context, format: .openMetrics), as: UTF8.self)
        #expect(open.contains("# TYPE rapl_exporter_restart_gaps counter\nrapl_exporter_restart_gaps_total 1\n"))
    }
}
