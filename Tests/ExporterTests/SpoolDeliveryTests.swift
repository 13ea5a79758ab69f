import Logging
import RAPLBackend
import Support
import TestSupport
import Testing

@testable import Exporter

/// The remote writer with a spool: long outages, restarts and replays, on a manual clock.
@Suite struct SpoolDeliveryTests {
    let endpoint = RemoteWriteEndpoint("http://127.0.0.1:9/api/v1/write")!
    static let base = Int64(1_800_000_000_000_000)

    func writer(
        _ dir: TempDirectory, transport: RecordingTransport, clock: TestClock, log: LogCapture, settings: RemoteWriteSettings? = nil,
        cumulative: Bool = false, wallClock: TestWallClock = TestWallClock()
    ) throws -> RemoteWriter<TestClock> {
        var s = settings ?? RemoteWriteSettings(endpoint: endpoint, pushInterval: .seconds(4))
        s.series.cumulative = cumulative
        let spool = try Spool.open(SpoolSettings(directory: dir.spool), logger: log.logger)
        return RemoteWriter(
            settings: s, transport: transport, clock: clock, wallClock: wallClock, random: { 0.5 }, spool: spool, source: ("boot-a", "sysfs"),
            logger: log.logger)
    }

    /// A first run whose receiver is down: the windows of `steps` are accepted, cut into one spooled batch
    /// and tried once; then it stops as a crash would (nothing flushed), letting go of the spool. Returns
    /// the transport, with what it tried to send.
    func crashedRun(
        _ dir: TempDirectory, clock: TestClock, log: LogCapture, settings: RemoteWriteSettings? = nil, cumulative: Bool = false,
        steps: ClosedRange<Int>, _ window: (Int) -> EnergyWindow
    ) async throws -> RecordingTransport {
        let down = RecordingTransport(down: { true })
        let w = try writer(dir, transport: down, clock: clock, log: log, settings: settings, cumulative: cumulative)
        for step in steps { w.accept(window(step)) }
        await w.cutBatch()
        await w.drain(until: nil)
        await w.closeSpool()
        return down
    }

    /// The case: a receiver down for 10 minutes behind a 20 s memory queue (MAX_RETRY_BATCHES 5 ×
    /// PUSH_INTERVAL_S 4). Every window arrives exactly once, in order, nothing is counted as dropped, and
    /// the backlog goes out in requests of at most MAX_SAMPLES_PER_REQUEST, one at a time.
    @Test func aTenMinuteOutageBehindATwentySecondQueueLosesNothing() async throws {
        let dir = TempDirectory()
        let log = LogCapture()
        let clock = TestClock()
        let outage = Duration.seconds(30)..<Duration.seconds(630)
        let transport = RecordingTransport(down: { outage.contains(clock.now.offset) })
        var settings = RemoteWriteSettings(endpoint: endpoint, pushInterval: .seconds(4))
        settings.maxSamplesPerRequest = 500
        let w = try writer(dir, transport: transport, clock: clock, log: log, settings: settings)
        let task = Task { try await w.run() }
        await clock.waitForSleepers()
        let windows = 720 * 10
        for step in 1...windows {
            w.accept(window([UInt64(step)], endMicros: Self.base + Int64(step) * 100_000))
            clock.advance(by: .milliseconds(100))
            await clock.waitForSleepers()
        }
        task.cancel()
        try await task.value
        let stats = await w.statistics
        #expect(stats.totalDropped == 0)
        let delivered = energy(transport.deliveredRequests).map(\.1)
        #expect(delivered == (1...windows).map(Double.init))
        // Bounded: no request larger than the limit (energy + self-metrics).
        #expect(transport.requests.allSatisfy { $0.timeseries.reduce(0) { $0 + $1.samples.count } <= 500 })
        #expect(log.contains("wait in the spool"))
        #expect(log.count("wait in the spool") == 1)
        #expect(log.contains("sending 500 spooled windows"))
    }

    /// A crash (nothing flushed) with windows spooled but undelivered: the next start sends them first, in
    /// order, with the same timestamps and values, then its own.
    @Test func aRestartSendsTheSpoolFirstWithTheSameSamples() async throws {
        let dir = TempDirectory()
        let log = LogCapture()
        let clock = TestClock()
        let firstRun = energy(
            try await crashedRun(dir, clock: clock, log: log, cumulative: true, steps: 1...30) {
                window([UInt64($0), 1], endMicros: Self.base + Int64($0) * 100_000)
            }.requests)
        #expect(firstRun.count == 30)
        let transport = RecordingTransport()
        let w = try writer(dir, transport: transport, clock: clock, log: log, cumulative: true)
        for step in 31...40 {
            var next = window([UInt64(step), 1], endMicros: Self.base + Int64(step) * 100_000)
            // What the sampler's first window says after an accounted restart (RestartCheck): the totals go on.
            if step == 31 { next.restart = .accounted(totals: [UInt64((1...30).reduce(0, +)), 30]) }
            w.accept(next)
        }
        await w.cutBatch()
        await w.drain(until: nil)
        let sent = energy(transport.deliveredRequests)
        #expect(sent.map(\.1) == (1...40).map(Double.init))
        #expect(Array(sent.prefix(30)).map(\.0) == firstRun.map(\.0))
        // The cumulative counter continues where the spool left it: never backwards.
        let totals = transport.deliveredRequests.flatMap { $0.samples(["__name__": "rapl_energy_joules_total", "component": "package-0"]) }
        #expect(totals.map(\.1) == totals.map(\.1).sorted())
        #expect(totals.last!.1 == Double((1...40).reduce(0, +)) / 1e6)
        #expect(await w.statistics.totalDropped == 0)
        #expect(log.contains("30 windows not yet delivered"))
    }

    /// After a crash between the receiver storing a request and the position being recorded, the replay
    /// starts with samples the receiver holds; a receiver that refuses old samples refuses the request
    /// whole (400). The replay halves it until the new samples get through.
    @Test func aReplayRefusedAsTooOldIsHalvedNotDropped() async throws {
        let dir = TempDirectory()
        let log = LogCapture()
        let clock = TestClock()
        _ = try await crashedRun(dir, clock: clock, log: log, steps: 1...8) { window([UInt64($0)], endMicros: Self.base + Int64($0) * 100_000) }
        let bad = TransportResult.response(status: 400, headers: [], body: Array("out of order sample".utf8))
        // The receiver holds windows 1–2: a request holding either is refused.
        let transport = RecordingTransport([bad, bad, bad, bad, bad])
        let w = try writer(dir, transport: transport, clock: clock, log: log)
        await w.drain(until: nil)
        let sent = energy(transport.deliveredRequests).map(\.1)
        // 8 → refused; 4 (1–4), 2 (1–2), 1 and 2 alone → refused, those two dropped as rejected; 3 alone
        // delivered, and the rest in one request again.
        #expect(sent == [3, 4, 5, 6, 7, 8])
        #expect(transport.bodies.count == 7)
        #expect(await w.statistics.dropped[.rejected] == 2)
        #expect(log.contains("some may be stored already"))
    }

    /// A restart's backlog goes out as the writer starts, not at its first push tick; a backlog older than
    /// `--max-sample-age` is dropped and counted, logged once for the whole run of it, not per batch.
    @Test func theBacklogGoesOutAtStartAndTooOldIsLoggedOnce() async throws {
        let dir = TempDirectory()
        let log = LogCapture()
        let clock = TestClock()
        var settings = RemoteWriteSettings(endpoint: endpoint, pushInterval: .seconds(4))
        settings.maxSamplesPerRequest = 100
        // An hour at 10 Hz.
        _ = try await crashedRun(dir, clock: clock, log: log, settings: settings, steps: 1...36_000) {
            window([1], endMicros: Self.base + Int64($0) * 100_000)
        }
        let transport = RecordingTransport()
        let w = try writer(dir, transport: transport, clock: clock, log: log, settings: settings, wallClock: TestWallClock(Self.base + 3_600_000_000))
        let task = Task { try await w.run() }
        await clock.waitForSleepers()
        // Nothing advanced the clock: the backlog went out before the first tick. The older half (beyond
        // the 30 min default) was dropped and counted, logged once when it began and once when it ended.
        let sent = energy(transport.deliveredRequests)
        // Windows 18 000 (exactly 30 min old) to 36 000 are kept.
        #expect(sent.count == 18_001)
        #expect(await w.statistics.dropped[.tooOld] == 17_999)
        #expect(log.count("samples older than") == 1)
        #expect(log.contains("the spool's backlog is delivered: 36000 windows"))
        task.cancel()
        try await task.value
        #expect(log.contains("17999 were dropped as older than"))
    }

    /// With a spool, a shutdown that cannot deliver keeps the windows on disk instead of counting them lost.
    @Test func aShutdownThatCannotDeliverKeepsTheWindowsInTheSpool() async throws {
        let dir = TempDirectory()
        let log = LogCapture()
        let clock = TestClock()
        do {
            let w = try writer(dir, transport: RecordingTransport(down: { true }), clock: clock, log: log)
            for step in 1...10 { w.accept(window([UInt64(step)], endMicros: Self.base + Int64(step) * 100_000)) }
            await w.flush(until: clock.now)
            #expect(await w.statistics.dropped[.shutdown] == 0)
            #expect(log.contains("stay in the spool"))
            await w.closeSpool()
        }
        let spool = try Spool.open(SpoolSettings(directory: dir.spool), logger: log.logger)
        #expect(spool.backlog(after: spool.acked, before: spool.nextSeq, maxWindows: 100).map(\.1.energy[0]) == (1...10).map { UInt64($0) })
    }
}

/// Whether the energy used while the exporter was down can be accounted.
@Suite struct RestartCheckTests {
    let domains = [Domain(.package, socket: 0), Domain(.core, socket: 0)]
    var counters: [CounterSpec] {
        [
            CounterSpec(domain: domains[0], unit: .microjoule, source: "intel-rapl:0"),
            CounterSpec(domain: domains[1], unit: .microjoule, source: "intel-rapl:0:0"),
        ]
    }
    let modulus: UInt128 = 262_143_328_851

    func check(boot: String = "boot-a", backend: String = "sysfs", power: Double = 5000, anchorValues: [UInt64] = [1000, 2000]) -> RestartCheck {
        let source = SpoolSource(
            bootID: "boot-a", backend: "sysfs", domains: domains,
            counters: counters.enumerated().map { SpooledCounter(source: $1.source, domainIndex: $0, modulus: modulus, unit: .microjoule) })
        let window = SpooledWindow(
            seq: 7, timestampMilliseconds: 1_800_000_000_000, bootMicroseconds: 10_000_000, energy: [5, 6], totals: [700_000, 300_000],
            counterValues: anchorValues)
        return RestartCheck(anchor: SpoolAnchor(source: source, window: window), bootID: boot, backend: backend, maximumPower: power)
    }

    func evaluate(_ c: RestartCheck, values: [UInt64], after seconds: Double, readable: [Bool] = [true, true], counters: [CounterSpec]? = nil)
        -> RestartCheck.Outcome
    {
        c.evaluate(
            domains: domains, counters: counters ?? self.counters, moduli: [modulus, modulus], values: values, readable: readable,
            nowBootMicroseconds: 10_000_000 + Int64(seconds * 1e6))
    }

    @Test func theSameCountersSoonAfterAreAccountedExactlyThroughAWrap() {
        // Package: 851 µJ below the top → wrapped to 500 (1351 µJ); core: 2000 → 3_002_000.
        let outcome = evaluate(check(anchorValues: [UInt64(modulus) - 851, 2000]), values: [500, 3_002_000], after: 30)
        let wrapped: UInt64 = 851 + 500
        #expect(outcome == .accounted(gap: [wrapped, 3_000_000], totals: [700_000, 300_000], downtimeMicroseconds: 30_000_000))
    }

    @Test func anotherBootBackendOrCountersIsAGap() {
        #expect(evaluate(check(boot: "boot-b"), values: [1, 2], after: 1).isGap("the machine restarted"))
        #expect(evaluate(check(backend: "msr"), values: [1, 2], after: 1).isGap("the backend changed"))
        var perf = check(backend: "perf")
        perf.anchor.source.backend = "perf"
        #expect(evaluate(perf, values: [1, 2], after: 1).isGap("perf counters count from zero"))
        var other = counters
        other[1].source = "intel-rapl:0:1"
        #expect(evaluate(check(), values: [1, 2], after: 1, counters: other).isGap("the counters differ"))
        #expect(evaluate(check(), values: [1, 2], after: 1, readable: [true, false]).isGap("could not be read at start"))
    }

    @Test func aDowntimeLongEnoughToHideAWrapIsAGap() {
        // 262 kJ at 5000 W: 52.4 s.
        #expect(evaluate(check(), values: [2000, 3000], after: 52).isAccounted)
        #expect(evaluate(check(), values: [2000, 3000], after: 53).isGap("longer than the 52.4 s"))
        // A lower bound gives longer: 262 kJ at 500 W is 524 s.
        #expect(evaluate(check(power: 500), values: [2000, 3000], after: 500).isAccounted)
    }

    @Test func aCounterThatMovedImpossiblyIsAGap() {
        // 100 kJ in 1 s is more than 5000 W: a reset or reload, not energy.
        #expect(evaluate(check(), values: [1000 + 100_000_000_000, 2000], after: 1).isGap("not energy"))
    }

    /// The writer continues the cumulative totals after an accounted restart and starts them again after a
    /// gap, counting it.
    @Test func theWriterContinuesOrRestartsTheTotals() async throws {
        let dir = TempDirectory()
        let log = LogCapture()
        for (mark, expected, gaps) in [(RestartMark.accounted(totals: [5_000_000]), 5.000_010, 0.0), (.gap, 0.000_010, 1.0)] {
            let transport = RecordingTransport()
            var settings = RemoteWriteSettings(endpoint: RemoteWriteEndpoint("http://127.0.0.1:9/api/v1/write")!)
            settings.series.cumulative = true
            let spool = try Spool.open(SpoolSettings(directory: dir.spool), logger: log.logger)
            let w = RemoteWriter(
                settings: settings, transport: transport, clock: TestClock(), wallClock: TestWallClock(), spool: spool, logger: log.logger)
            var first = window([10], endMicros: 1_800_000_000_000_000)
            first.restart = mark
            w.accept(first)
            await w.cutBatch()
            await w.drain(until: nil)
            let sent = transport.deliveredRequests
            #expect(sent.flatMap { $0.samples(["__name__": "rapl_energy_joules_total"]) }.map(\.1) == [expected])
            #expect(sent.flatMap { $0.samples(["__name__": "rapl_exporter_restart_gaps_total"]) }.map(\.1) == [gaps])
            await w.closeSpool()
        }
    }
}

extension RestartCheck.Outcome {
    func isGap(_ text: String) -> Bool {
        if case .gap(let why) = self { return why.contains(text) }
        return false
    }
    var isAccounted: Bool {
        if case .accounted = self { return true }
        return false
    }
}
