import Foundation
import RAPLBackend
import ServiceLifecycle
import Support
import TestSupport
import Testing

@testable import Exporter

@Suite struct PushDecisionTests {
    @Test(arguments: [200, 204])
    func successIsDelivered(_ status: Int) {
        #expect(PushDecision.decide(.response(status: status, headers: [], body: []), nowSeconds: 0) == .delivered)
    }

    @Test(arguments: [429, 500, 502, 503, 504])
    func serverErrorsAndTooManyRequestsAreRetried(_ status: Int) {
        guard case .retry(nil, _) = PushDecision.decide(.response(status: status, headers: [], body: []), nowSeconds: 0) else {
            Issue.record("\(status) should be retried")
            return
        }
    }

    @Test(arguments: [400, 401, 403, 404, 409, 413, 301])
    func otherStatusesAreRejected(_ status: Int) {
        guard
            case .reject(_, let reason) = PushDecision.decide(
                .response(status: status, headers: [], body: Array("out of order sample".utf8)), nowSeconds: 0)
        else {
            Issue.record("\(status) should not be retried")
            return
        }
        #expect(reason.contains("HTTP \(status)"))
        #expect(reason.contains("out of order sample"))
    }

    @Test func networkFailuresAreRetried() {
        #expect(PushDecision.decide(.failure("connection refused"), nowSeconds: 0) == .retry(retryAfter: nil, reason: "connection refused"))
    }

    @Test func retryAfterSecondsAndHTTPDate() {
        let now: Int64 = 784_111_777  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(PushDecision.parseRetryAfter("120", nowSeconds: now) == .seconds(120))
        #expect(PushDecision.parseRetryAfter("Sun, 06 Nov 1994 08:49:47 GMT", nowSeconds: now) == .seconds(10))
        #expect(PushDecision.parseRetryAfter("Sun, 06 Nov 1994 08:49:00 GMT", nowSeconds: now) == .zero)
        #expect(PushDecision.parseRetryAfter("soon", nowSeconds: now) == nil)
        let result = TransportResult.response(status: 429, headers: [("retry-after", "7")], body: [])
        #expect(PushDecision.decide(result, nowSeconds: now) == .retry(retryAfter: .seconds(7), reason: "HTTP 429"))
    }

    @Test func longBodiesAreTruncatedForTheLog() {
        let body = Array(repeating: UInt8(ascii: "x"), count: 1000)
        guard case .reject(_, let reason) = PushDecision.decide(.response(status: 400, headers: [], body: body), nowSeconds: 0) else { return }
        #expect(reason.count < 300)
        #expect(reason.hasSuffix("… (1000 bytes)"))
    }
}

@Suite struct RetryPolicyTests {
    @Test func exponentialWithJitterAndCap() {
        let policy = RetryPolicy(initialBackoff: .milliseconds(500), maximumBackoff: .seconds(30), multiplier: 2, jitter: 0.2)
        #expect(policy.delay(attempt: 1, retryAfter: nil, random: 0.5) == .milliseconds(500))
        #expect(policy.delay(attempt: 2, retryAfter: nil, random: 0.5) == .seconds(1))
        #expect(policy.delay(attempt: 4, retryAfter: nil, random: 0.5) == .seconds(4))
        #expect(policy.delay(attempt: 20, retryAfter: nil, random: 0.5) == .seconds(30))
        #expect(policy.delay(attempt: 1, retryAfter: nil, random: 0) == .milliseconds(400))
        #expect(policy.delay(attempt: 1, retryAfter: nil, random: 0.999_999) > .milliseconds(599))
    }

    @Test func retryAfterReplacesBackoffAndIsCapped() {
        let policy = RetryPolicy(maximumRetryAfter: .seconds(300))
        #expect(policy.delay(attempt: 1, retryAfter: .seconds(42), random: 0.9) == .seconds(42))
        #expect(policy.delay(attempt: 1, retryAfter: .seconds(86400), random: 0.9) == .seconds(300))
    }
}

@Suite struct RemoteWriterTests {
    let endpoint = RemoteWriteEndpoint("http://127.0.0.1:9/api/v1/write")!

    func writer(
        _ transport: RecordingTransport,
        clock: TestClock = TestClock(),
        wall: TestWallClock = TestWallClock(),
        logger: LogCapture = LogCapture(),
        followingBatches: Bool = false,
        configure: (inout RemoteWriteSettings) -> Void = { _ in }
    ) -> RemoteWriter<TestClock> {
        var settings = RemoteWriteSettings(endpoint: endpoint, pushInterval: .seconds(4))
        configure(&settings)
        return RemoteWriter(
            settings: settings, transport: transport, clock: clock, wallClock: wall, random: { 0.5 }, pushesFollowBatches: followingBatches,
            logger: logger.logger)
    }

    @Test func oneBatchCarriesEveryWindowInOrderWithSortedLabels() async throws {
        let transport = RecordingTransport()
        let w = writer(transport) { $0.series.source = "lab-7" }
        let t = Int64(1_800_000_000_000_000)
        w.accept(window([100, 40], endMicros: t + 100_000))
        w.accept(window([101, nil], endMicros: t + 200_000))
        w.accept(window([102, 42], endMicros: t + 300_000))
        await w.cutBatch()
        await w.drain(until: nil)
        let requests = transport.requests
        #expect(requests.count == 1)
        #expect(energy(requests).map(\.1) == [100, 101, 102])
        #expect(energy(requests).map(\.0) == [1_800_000_000_100, 1_800_000_000_200, 1_800_000_000_300])
        // The unreadable window of `core` is absent, not a zero.
        #expect(energy(requests, component: "core").map(\.1) == [40, 42])
        for series in requests[0].timeseries {
            let names = series.labels.map(\.name)
            #expect(names == names.sorted())
            #expect(names.first == "__name__")
            #expect(series.labels.allSatisfy { !$0.value.isEmpty })
        }
        let pkg = try #require(requests[0].timeseries.first { $0.labels.contains { $0.value == "package-0" } })
        #expect(
            pkg.labels.map { "\($0.name)=\($0.value)" } == [
                "__name__=pyjoules_remote_write_energy_uj", "component=package-0", "socket=0", "source=lab-7",
            ])
        // Self-metrics ride along.
        #expect(!requests[0].samples(["__name__": "rapl_exporter_samples_sent_total", "source": "lab-7"]).isEmpty)
        #expect(await w.statistics.sent == UInt64(requests[0].timeseries.reduce(0) { $0 + $1.samples.count }))
    }

    @Test func extraLabelsGoOnEverySeries() async {
        let transport = RecordingTransport()
        let w = writer(transport) { $0.series.extra = [("node", "web-1")] }
        w.accept(window([1], endMicros: 1_800_000_000_000_000))
        await w.cutBatch()
        await w.drain(until: nil)
        let series = transport.requests[0].timeseries
        #expect(series.count > 5)
        #expect(series.allSatisfy { $0.labels.contains { $0.name == "node" && $0.value == "web-1" } })
        #expect(series.allSatisfy { $0.labels.map(\.name) == $0.labels.map(\.name).sorted() })
    }

    @Test func windowsWithinOneMillisecondGetDistinctTimestamps() async {
        let transport = RecordingTransport()
        let w = writer(transport)
        let t = Int64(1_800_000_000_000_000)
        w.accept(window([1], endMicros: t + 1_100))
        w.accept(window([2], endMicros: t + 1_900))
        w.accept(window([3], endMicros: t + 3_000))
        await w.cutBatch()
        await w.drain(until: nil)
        #expect(energy(transport.requests).map(\.0) == [1_800_000_000_001, 1_800_000_000_002, 1_800_000_000_003])
    }

    @Test func largeBatchesAreSplitAndStayInOrder() async {
        let transport = RecordingTransport()
        let w = writer(transport) { $0.maxSamplesPerRequest = 4 }
        let t = Int64(1_800_000_000_000_000)
        for i in 0..<10 { w.accept(window([UInt64(i)], endMicros: t + Int64(i) * 100_000)) }
        await w.cutBatch()
        await w.drain(until: nil)
        let requests = transport.requests
        #expect(requests.count >= 3)
        #expect(requests.allSatisfy { $0.timeseries.reduce(0) { $0 + $1.samples.count } <= 4 })
        #expect(energy(requests).map(\.1) == (0..<10).map(Double.init))
    }

    @Test func serverErrorIsRetriedWithTheSameBatchThenDelivered() async {
        let transport = RecordingTransport([.response(status: 500, headers: [], body: Array("busy".utf8))])
        let clock = TestClock()
        let w = writer(transport, clock: clock)
        w.accept(window([7], endMicros: 1_800_000_000_000_000))
        await w.cutBatch()
        await w.drain(until: nil)
        #expect(transport.bodies.count == 1)
        #expect(await w.queuedBatches == 1)
        // Backoff 0.5 s (random 0.5 = no jitter): not before.
        clock.advance(by: .milliseconds(499))
        await w.drain(until: nil)
        #expect(transport.bodies.count == 1)
        clock.advance(by: .milliseconds(1))
        await w.drain(until: nil)
        #expect(transport.bodies.count == 2)
        #expect(transport.bodies[0] == transport.bodies[1])
        let stats = await w.statistics
        #expect(stats.failed == stats.retried)
        #expect(stats.sent == stats.retried)
        #expect(stats.totalDropped == 0)
        #expect(await w.queuedBatches == 0)
    }

    @Test func tooManyRequestsHonoursRetryAfter() async {
        let transport = RecordingTransport([.response(status: 429, headers: [("Retry-After", "7")], body: [])])
        let clock = TestClock()
        let w = writer(transport, clock: clock)
        w.accept(window([7], endMicros: 1_800_000_000_000_000))
        await w.cutBatch()
        await w.drain(until: nil)
        clock.advance(by: .milliseconds(6999))
        await w.drain(until: nil)
        #expect(transport.bodies.count == 1)
        clock.advance(by: .milliseconds(1))
        await w.drain(until: nil)
        #expect(transport.bodies.count == 2)
        #expect(await w.statistics.totalDropped == 0)
    }

    @Test func badRequestIsDroppedCountedAndLoggedNotRetried() async {
        let log = LogCapture()
        let bad = TransportResult.response(status: 400, headers: [], body: Array("out of order sample".utf8))
        let transport = RecordingTransport([bad, bad])
        let w = writer(transport, logger: log)
        w.accept(window([7], endMicros: 1_800_000_000_000_000))
        await w.cutBatch()
        await w.drain(until: nil)
        w.accept(window([8], endMicros: 1_800_000_000_100_000))
        await w.cutBatch()
        await w.drain(until: nil)
        // The mixed request, then its energy alone (rejected: dropped), its self-metrics alone
        // (delivered), then the next batch.
        #expect(transport.bodies.count == 4)
        #expect(energy([transport.requests[1]]).map(\.1) == [7])
        #expect(energy([transport.requests[2]]).isEmpty)
        #expect(energy([transport.requests[3]]).map(\.1) == [8])
        let stats = await w.statistics
        #expect(stats.dropped[.rejected] == 1)
        #expect(stats.retried == 0)
        #expect(log.contains("receiver rejected 1 samples, dropped (not retried): HTTP 400: out of order sample"))
        // The counter that shows the rejection reaches the receiver in the next batch.
        #expect(transport.requests[3].samples(["__name__": "rapl_exporter_samples_dropped_total", "reason": "rejected"]).map(\.1) == [1])
    }

    @Test func tooLargeIsSplitInHalvesNotDropped() async {
        let tooLarge = TransportResult.response(status: 413, headers: [], body: Array("request entity too large".utf8))
        let transport = RecordingTransport([tooLarge, tooLarge])
        let w = writer(transport)
        let t = Int64(1_800_000_000_000_000)
        for i in 0..<8 { w.accept(window([UInt64(i)], endMicros: t + Int64(i) * 100_000)) }
        await w.cutBatch()
        let total = await w.pendingSamples
        await w.drain(until: nil)
        let stats = await w.statistics
        #expect(stats.totalDropped == 0)
        #expect(stats.splits == 2)
        #expect(stats.sent == UInt64(total))
        #expect(energy(transport.requests.dropFirst(2).map { $0 }).map(\.1) == (0..<8).map(Double.init))
        // Whole, then halves, then quarters.
        let sizes = transport.requests.map { $0.timeseries.reduce(0) { $0 + $1.samples.count } }
        #expect(sizes[0] == total)
        #expect(sizes[1] == (total + 1) / 2)
        #expect(sizes.dropFirst(2).allSatisfy { $0 <= ((total + 1) / 2 + 1) / 2 })
    }

    @Test func queueBoundDropsTheOldestBatchAfterOneMoreAttempt() async {
        let transport = RecordingTransport(Array(repeating: .failure("connection refused"), count: 100))
        let clock = TestClock()
        let w = writer(transport, clock: clock) { $0.maxQueuedBatches = 2 }
        var sizes: [Int] = []
        var attempts: [Int] = []
        for i in 0..<4 {
            let before = await w.pendingSamples
            w.accept(window([UInt64(i)], endMicros: 1_800_000_000_000_000 + Int64(i) * 4_000_000))
            let sentBefore = transport.bodies.count
            await w.cutBatch()
            attempts.append(transport.bodies.count - sentBefore)
            if i < 2 { sizes.append(await w.pendingSamples - before) }
            await w.drain(until: nil)
        }
        // Cutting the third and fourth batch tried the head once more, though it was backing off.
        #expect(attempts == [0, 0, 1, 1])
        #expect(await w.queuedBatches == 2)
        // Two batches were dropped: the first two (same shape).
        let stats = await w.statistics
        #expect(stats.dropped[.queueFull] == UInt64(sizes[0] + sizes[1]))
        // The survivors are the newest two, still in order: let the receiver recover.
        transport.script([])
        clock.advance(by: .seconds(60))
        let sentBefore = transport.bodies.count
        await w.drain(until: nil)
        let delivered = Array(transport.requests.suffix(from: sentBefore))
        #expect(energy(delivered).map(\.1) == [2, 3])
        #expect(await w.queuedBatches == 0)
    }

    @Test func samplesOlderThanTheAgeCapAreDropped() async {
        let transport = RecordingTransport([.failure("connection refused")])
        let clock = TestClock()
        let wall = TestWallClock()
        let w = writer(transport, clock: clock, wall: wall) { $0.maxSampleAge = .seconds(60) }
        let t = wall.nowMicroseconds()
        w.accept(window([7], endMicros: t))
        await w.cutBatch()
        await w.drain(until: nil)  // fails, retry in 0.5 s
        wall.advance(by: .seconds(61))
        clock.advance(by: .seconds(1))
        w.accept(window([8], endMicros: wall.nowMicroseconds()))
        await w.cutBatch()
        await w.drain(until: nil)
        let stats = await w.statistics
        // Everything of the first batch (window and self-metrics) was too old.
        #expect(stats.dropped[.tooOld] ?? 0 >= 1)
        #expect(energy(transport.requests).map(\.1) == [7, 8])  // 7 was in the failed attempt only
        #expect(energy(Array(transport.requests.suffix(1))).map(\.1) == [8])
    }

    @Test func shutdownFlushWaitsForARetryWithinTheDeadline() async {
        let transport = RecordingTransport([.response(status: 503, headers: [("Retry-After", "2")], body: [])])
        let clock = TestClock()
        let w = writer(transport, clock: clock) { $0.shutdownTimeout = .seconds(10) }
        w.accept(window([5], endMicros: 1_800_000_000_000_000))
        let flush = Task { await w.flush() }
        await clock.waitForSleepers()
        #expect(transport.bodies.count == 1)
        clock.advance(by: .seconds(2))
        await flush.value
        #expect(transport.bodies.count == 2)
        let stats = await w.statistics
        #expect(stats.totalDropped == 0)
        #expect(energy(Array(transport.requests.suffix(1))).map(\.1) == [5])
    }

    @Test func shutdownGivesUpAtTheDeadlineAndCountsTheLoss() async {
        let log = LogCapture()
        let transport = RecordingTransport([.response(status: 503, headers: [("Retry-After", "60")], body: [])])
        let w = writer(transport, logger: log) { $0.shutdownTimeout = .seconds(10) }
        w.accept(window([5], endMicros: 1_800_000_000_000_000))
        await w.flush()
        let stats = await w.statistics
        #expect(stats.dropped[.shutdown] ?? 0 > 0)
        #expect(log.contains("could not be delivered within"))
    }

    /// A long Retry-After pending at shutdown does not make everything be dropped unattempted: the
    /// queue gets one attempt at once.
    @Test func shutdownAttemptsAtOnceDespiteALongRetryAfter() async {
        let log = LogCapture()
        let transport = RecordingTransport([.response(status: 429, headers: [("Retry-After", "300")], body: [])])
        let w = writer(transport, logger: log) { $0.shutdownTimeout = .seconds(10) }
        w.accept(window([5], endMicros: 1_800_000_000_000_000))
        await w.cutBatch()
        await w.drain(until: nil)
        #expect(transport.bodies.count == 1)
        await w.flush()
        #expect(transport.bodies.count == 3)  // the waiting batch, then the one cut at shutdown
        #expect(await w.statistics.totalDropped == 0)
        #expect(log.contains("shutdown: everything delivered"))
    }

    /// The shutdown summary does not claim that everything was delivered when samples were dropped.
    @Test func shutdownSummaryMentionsEarlierDrops() async {
        let log = LogCapture()
        let bad = TransportResult.response(status: 400, headers: [], body: [])
        let w = writer(RecordingTransport([bad, bad]), logger: log)
        w.accept(window([5], endMicros: 1_800_000_000_000_000))
        await w.flush()
        #expect(!log.contains("everything delivered"))
        #expect(log.contains("samples were dropped during the run"))
        #expect(log.contains("dropped in all (rejected 1)"))
    }

    @Test func runPushesEveryIntervalAndFlushesOnCancellation() async throws {
        let transport = RecordingTransport()
        let clock = TestClock()
        let w = writer(transport, clock: clock)
        let task = Task { try await w.run() }
        await clock.waitForSleepers()
        w.accept(window([1], endMicros: 1_800_000_000_000_000))
        clock.advance(by: .seconds(4))
        await clock.waitForSleepers()
        #expect(energy(transport.requests).map(\.1) == [1])
        w.accept(window([2], endMicros: 1_800_000_000_100_000))
        task.cancel()
        try await task.value
        #expect(energy(transport.requests).map(\.1) == [1, 2])
    }

    /// Following the sampler's batches, the hand-over's ring is the push: at once, with no time passing
    /// on the clock. Without a ring the push interval's timer still pushes, half an interval late; a ring
    /// then pushes again at once. A writer that does not follow batches ignores rings.
    @Test func pushesFollowTheBatchesAndTheTimerStandsIn() async throws {
        let transport = RecordingTransport()
        let clock = TestClock()
        let w = writer(transport, clock: clock, followingBatches: true)
        let task = Task { try await w.run() }
        await clock.waitForSleepers()
        w.accept(window([1], endMicros: 1_800_000_000_000_000))
        w.batchHandedOver()
        await clock.waitForSleepers()
        #expect(energy(transport.requests).map(\.1) == [1])
        // No batch for a push interval: nothing yet; half an interval later the timer pushes.
        w.accept(window([2], endMicros: 1_800_000_000_100_000))
        clock.advance(by: .seconds(4))
        #expect(transport.requests.count == 1)
        clock.advance(by: .seconds(2))
        await clock.waitForSleepers()
        #expect(energy(transport.requests).map(\.1) == [1, 2])
        w.accept(window([3], endMicros: 1_800_000_000_200_000))
        w.batchHandedOver()
        await clock.waitForSleepers()
        #expect(energy(transport.requests).map(\.1) == [1, 2, 3])
        task.cancel()
        try await task.value

        let timed = RecordingTransport()
        let timedClock = TestClock()
        let t = writer(timed, clock: timedClock)
        let timedTask = Task { try await t.run() }
        await timedClock.waitForSleepers()
        t.accept(window([1], endMicros: 1_800_000_000_000_000))
        t.batchHandedOver()
        await Task.yield()
        #expect(timed.requests.isEmpty)
        timedClock.advance(by: .seconds(4))
        await timedClock.waitForSleepers()
        #expect(energy(timed.requests).map(\.1) == [1])
        timedTask.cancel()
        try await timedTask.value
    }

    /// A request in flight when graceful shutdown begins may finish: its answer, coming within the
    /// shutdown timeout, is taken (the samples are not sent twice, nothing is dropped), and the flush
    /// then sends the rest.
    @Test func aRequestInFlightAtShutdownFinishesAndItsAnswerCounts() async throws {
        let transport = GatedTransport()
        let clock = TestClock()
        let w = RemoteWriter(
            settings: RemoteWriteSettings(endpoint: endpoint, pushInterval: .seconds(4)), transport: transport, clock: clock,
            wallClock: TestWallClock(), random: { 0.5 }, pushesFollowBatches: true, logger: LogCapture().logger)
        let group = ServiceGroup(services: [w], logger: LogCapture().logger)
        let running = Task { try await group.run() }
        await clock.waitForSleepers()
        w.accept(window([1], endMicros: 1_800_000_000_000_000))
        w.batchHandedOver()
        await transport.waitForRequests(1)
        w.accept(window([2], endMicros: 1_800_000_000_100_000))
        await group.triggerGracefulShutdown()
        // Shutdown is waiting for the request (and sleeps until its deadline meanwhile).
        await clock.waitForSleepers()
        transport.answerFirst()
        try await running.value
        #expect(energy(transport.delivered).map(\.1) == [1, 2])
        let stats = await w.statistics
        #expect(stats.totalDropped == 0 && stats.failed == 0)
    }

    @Test func cumulativeCounterInJoules() async {
        let transport = RecordingTransport()
        let w = writer(transport) { $0.series.cumulative = true }
        w.accept(window([1_500_000], endMicros: 1_800_000_000_000_000))
        w.accept(window([2_000_000], endMicros: 1_800_000_000_100_000))
        await w.cutBatch()
        await w.drain(until: nil)
        let total = transport.requests.flatMap { $0.samples(["__name__": "rapl_energy_joules_total", "component": "package-0"]) }
        #expect(total.map(\.1) == [1.5, 3.5])
    }

    /// A domain that refresh() finds mid-run (the window's domain list changes and reorders) gets its
    /// series; the others keep theirs and their cumulative totals.
    @Test func aDomainAppearingMidRunKeepsTheOthersTotals() async {
        let transport = RecordingTransport()
        let w = writer(transport) { $0.series.cumulative = true }
        let pkg = Domain(.package, socket: 0)
        let dram = Domain(.dram, socket: 0)
        let core = Domain(.core, socket: 0)
        w.accept(window([1_000_000, 500_000], domains: [pkg, dram], endMicros: 1_800_000_000_000_000))
        w.accept(window([2_000_000, 7, 500_000], domains: [pkg, core, dram], endMicros: 1_800_000_000_100_000))
        w.accept(window([1_000_000, nil, 1_000_000], domains: [pkg, core, dram], endMicros: 1_800_000_000_200_000))
        await w.cutBatch()
        await w.drain(until: nil)
        func totals(_ component: String) -> [Double] {
            transport.requests.flatMap { $0.samples(["__name__": "rapl_energy_joules_total", "component": component]) }.map(\.1)
        }
        #expect(totals("package-0") == [1, 3, 4])
        #expect(totals("dram") == [0.5, 1, 2])
        #expect(totals("core") == [0.000007])
        #expect(energy(transport.requests, component: "core").map(\.1) == [7])
        // Read-error and stuck gauges follow the last window's domains, core included.
        #expect(!transport.requests[0].samples(["__name__": "rapl_exporter_domain_stuck", "component": "core"]).isEmpty)
    }

    /// The pending gauge counts what is not yet delivered when a batch is cut: that batch included.
    @Test func pendingGaugeIncludesTheBatchBeingCut() async {
        let transport = RecordingTransport()
        let w = writer(transport)
        w.accept(window([1, 2], endMicros: 1_800_000_000_000_000))
        await w.cutBatch()
        await w.drain(until: nil)
        let gauge = transport.requests[0].samples(["__name__": "rapl_exporter_samples_pending"]).map(\.1)
        #expect(gauge == [2])
    }
}
