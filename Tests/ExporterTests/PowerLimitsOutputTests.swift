import RAPLBackend
import TestSupport
import Testing

@testable import Exporter

/// The power limits, TDP and throttle figures go out the way the energy does: pushed beside the
/// self-metrics with the domain's labels, and on /metrics.
@Suite struct PowerLimitsOutputTests {
    static let package = Domain(.package, socket: 0)

    static var snapshot: PowerLimitSnapshot {
        var s = PowerLimitSnapshot()
        s.limits = [
            PowerLimit(domain: package, constraint: "long_term", watts: 65, timeWindowSeconds: 28, enabled: true, clamped: true, locked: false),
            PowerLimit(domain: package, constraint: "peak_power", watts: 200, enabled: true),
        ]
        s.tdp = [DomainFigure(package, 65)]
        s.throttledSeconds = [DomainFigure(package, 1.5)]
        s.throttleGlitches = [DomainFigure(package, 0)]
        return s
    }

    @Test func theMetricsEndpointWritesEachFamilyOnceWithTheDomainsLabels() {
        var context = ScrapeContext(nameStyle: .seed, version: "test", backend: "sysfs", startTimeSeconds: 1, process: nil)
        context.limits = Self.snapshot
        let text = String(decoding: Exposition.render(ScrapeFigures(), context, format: .prometheusText), as: UTF8.self)
        #expect(text.contains("# TYPE rapl_power_limit_watts gauge\n"))
        #expect(text.contains("rapl_power_limit_watts{component=\"package-0\",socket=\"0\",constraint=\"long_term\"} 65.000000\n"))
        #expect(text.contains("rapl_power_limit_watts{component=\"package-0\",socket=\"0\",constraint=\"peak_power\"} 200.000000\n"))
        #expect(text.contains("rapl_power_limit_time_window_seconds{component=\"package-0\",socket=\"0\",constraint=\"long_term\"} 28.000000\n"))
        // peak_power has no window: no series, not a 0.
        #expect(!text.contains("rapl_power_limit_time_window_seconds{component=\"package-0\",socket=\"0\",constraint=\"peak_power\"}"))
        #expect(text.contains("rapl_power_limit_clamp_enabled{component=\"package-0\",socket=\"0\",constraint=\"long_term\"} 1.000000\n"))
        #expect(text.contains("rapl_tdp_watts{component=\"package-0\",socket=\"0\"} 65.000000\n"))
        #expect(
            text.contains(
                "# TYPE rapl_throttled_seconds_total counter\nrapl_throttled_seconds_total{component=\"package-0\",socket=\"0\"} 1.500000\n"))
        #expect(text.components(separatedBy: "# TYPE rapl_power_limit_watts ").count == 2)
        let open = String(decoding: Exposition.render(ScrapeFigures(), context, format: .openMetrics), as: UTF8.self)
        #expect(open.contains("# TYPE rapl_throttled_seconds counter\n"))
        #expect(open.contains("rapl_throttled_seconds_created{component=\"package-0\",socket=\"0\"} 1.000\n"))
        // Without a read (off, or nothing readable) there is no family at all.
        context.limits = nil
        #expect(!String(decoding: Exposition.render(ScrapeFigures(), context, format: .prometheusText), as: UTF8.self).contains("rapl_power_limit"))
    }

    @Test func eachPushCarriesTheLatestReadWithTheSelfMetrics() async {
        let transport = RecordingTransport()
        let wall = TestWallClock()
        var settings = RemoteWriteSettings(endpoint: RemoteWriteEndpoint("http://127.0.0.1:9/api/v1/write")!, pushInterval: .seconds(4))
        settings.series.extra = [("node", "a")]
        let w = RemoteWriter(
            settings: settings, transport: transport, clock: TestClock(), wallClock: wall, random: { 0.5 }, logger: LogCapture().logger)
        w.accept(window([100], endMicros: 1_800_000_000_100_000))
        w.accept(limits: Self.snapshot)
        await w.cutBatch()
        var changed = Self.snapshot
        changed.limits[0].watts = 45
        changed.throttledSeconds[0].value = 2.25
        w.accept(limits: changed)
        await w.cutBatch()
        await w.drain(until: nil)
        let requests = transport.requests
        let pl1 = requests.flatMap {
            $0.samples([
                "__name__": "rapl_power_limit_watts", "constraint": "long_term", "component": "package-0", "source": "cpu-pyjoules", "node": "a",
            ])
        }
        #expect(pl1.map(\.1) == [65, 45])
        #expect(requests.flatMap { $0.samples(["__name__": "rapl_throttled_seconds_total"]) }.map(\.1) == [1.5, 2.25])
        #expect(requests.flatMap { $0.samples(["__name__": "rapl_tdp_watts"]) }.count == 2)
    }

    @Test func aConstraintLabelOfTheUsersOwnIsRefused() {
        #expect(throws: ConfigurationError.self) { try Settings.resolve(CommandLineValues(), environment: ["EXTRA_LABELS": "constraint=x"]) }
    }

    @Test func theIntervalSettingIsCheckedAndZeroTurnsItOff() throws {
        #expect(try Settings.resolve(CommandLineValues(), environment: [:]).powerLimitsInterval == .seconds(5))
        #expect(try Settings.resolve(CommandLineValues(), environment: ["POWER_LIMITS_INTERVAL_S": "0"]).powerLimitsInterval == nil)
        var cli = CommandLineValues()
        cli[.powerLimitsInterval] = "30"
        #expect(try Settings.resolve(cli, environment: ["POWER_LIMITS_INTERVAL_S": "0"]).powerLimitsInterval == .seconds(30))
        #expect(throws: ConfigurationError.self) { try Settings.resolve(CommandLineValues(), environment: ["POWER_LIMITS_INTERVAL_S": "-1"]) }
    }

    @Test func theServiceReadsAtOnceAndThenEveryInterval() async throws {
        let tree = FakeTree.powercap()
        tree.constraint("intel-rapl:0", 0, name: "long_term", microwatts: 65_000_000, windowMicroseconds: 28_000_000)
        let reader = PowerLimitReader(paths: tree.paths, facts: SystemFacts(capabilities: [], perfParanoid: 2, identity: nil), leastPrivilege: false)
        let state = ScrapeState()
        let clock = TestClock()
        let service = PowerLimitsService(reader: reader, interval: .seconds(5), clock: clock, sinks: [state])
        let task = Task { try await service.run() }
        while state.limitsSnapshot == nil { await Task.yield() }
        #expect(state.limitsSnapshot?.limits.first?.watts == 65)
        tree.setZoneFile("intel-rapl:0", "constraint_0_power_limit_uw", "40000000\n")
        clock.advance(by: .seconds(4))
        for _ in 0..<100 { await Task.yield() }
        #expect(state.limitsSnapshot?.limits.first?.watts == 65, "not re-read before the interval")
        clock.advance(by: .seconds(1))
        while state.limitsSnapshot?.limits.first?.watts != 40 { await Task.yield() }
        task.cancel()
        _ = try? await task.value
    }
}

/// The backend is in the pushed data: a simulated source cannot be mistaken for a measurement.
@Suite struct BuildInfoTests {
    @Test func everyPushNamesTheBackend() async {
        let transport = RecordingTransport()
        let settings = RemoteWriteSettings(endpoint: RemoteWriteEndpoint("http://127.0.0.1:9/api/v1/write")!, pushInterval: .seconds(4))
        let w = RemoteWriter(
            settings: settings, transport: transport, clock: TestClock(), wallClock: TestWallClock(), random: { 0.5 }, source: ("", "simulated"),
            logger: LogCapture().logger)
        w.accept(window([100], endMicros: 1_800_000_000_100_000))
        await w.cutBatch()
        await w.drain(until: nil)
        let info = transport.requests.flatMap {
            $0.samples(["__name__": "rapl_exporter_build_info", "backend": "simulated", "source": "cpu-pyjoules"])
        }
        #expect(info.map(\.1) == [1])
    }
}
