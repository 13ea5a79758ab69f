import Logging
import RAPLBackend
import Support
import TestSupport
import Testing

@testable import Exporter

/// The writer's real push loop (`run()`) on a manual clock, fed a window every 100 ms, against a
/// receiver that is down for a while.
@Suite struct OutageTests {
    let endpoint = RemoteWriteEndpoint("http://127.0.0.1:9/api/v1/write")!
    static let base = Int64(1_800_000_000_000_000)

    /// Runs `seconds` of sampling at 10 Hz with the receiver down during `outage` (clock offsets);
    /// then lets the writer recover and flushes. Returns the writer and its transport.
    func simulate(
        seconds: Int, outage: Range<Duration>, maxQueuedBatches: Int = 5, followingBatches: Bool = false, log: LogCapture = LogCapture()
    ) async throws -> (RemoteWriter<TestClock>, RecordingTransport) {
        let clock = TestClock()
        let transport = RecordingTransport(down: { outage.contains(clock.now.offset) })
        var settings = RemoteWriteSettings(endpoint: endpoint, pushInterval: .seconds(4))
        settings.maxQueuedBatches = maxQueuedBatches
        let w = RemoteWriter(
            settings: settings, transport: transport, clock: clock, random: { 0.5 }, pushesFollowBatches: followingBatches, logger: log.logger)
        let task = Task { try await w.run() }
        await clock.waitForSleepers()
        for step in 1...(seconds * 10) {
            w.accept(window([UInt64(step)], endMicros: Self.base + Int64(step) * 100_000))
            if followingBatches && step % 40 == 1 {
                // The sampler's batches: its first window at once, then one push interval's windows.
                w.batchHandedOver()
                await clock.waitForSleepers()
            }
            clock.advance(by: .milliseconds(100))
            await clock.waitForSleepers()
        }
        task.cancel()
        try await task.value
        return (w, transport)
    }

    /// Sweeps outage lengths below MAX_RETRY_BATCHES × PUSH_INTERVAL_S (5 × 4 s) at several phases
    /// against the push ticks: every window arrives, once, in order.
    @Test(arguments: [8.0, 10.3, 11.95], [0.5, 3.9, 4.1, 8.1, 12.0, 16.5, 19.0, 19.9])
    func anOutageShorterThanTheQueueLosesNothing(start: Double, length: Double) async throws {
        let from = Duration(secondsValue: start)
        let (w, transport) = try await simulate(seconds: 60, outage: from..<(from + Duration(secondsValue: length)))
        let stats = await w.statistics
        #expect(stats.totalDropped == 0)
        #expect(energy(transport.deliveredRequests).map(\.1) == (1...600).map(Double.init))
        if length >= 4 { #expect(stats.failed > 0) }  // it spans a push
    }

    /// The same sweep with pushes following the sampler's batches (a ring every 40 windows).
    @Test(arguments: [8.0, 10.3, 11.95], [0.5, 3.9, 4.1, 8.1, 12.0, 16.5, 19.0, 19.9])
    func anOutageShorterThanTheQueueLosesNothingWhenPushesFollowBatches(start: Double, length: Double) async throws {
        let from = Duration(secondsValue: start)
        let (w, transport) = try await simulate(seconds: 60, outage: from..<(from + Duration(secondsValue: length)), followingBatches: true)
        let stats = await w.statistics
        #expect(stats.totalDropped == 0)
        #expect(energy(transport.deliveredRequests).map(\.1) == (1...600).map(Double.init))
        if length >= 4 { #expect(stats.failed > 0) }
    }

    @Test func anOutageLongerThanTheQueueDropsOnlyTheOldestAndCountsThem() async throws {
        let log = LogCapture()
        let (w, transport) = try await simulate(seconds: 80, outage: .seconds(10)..<(.seconds(40)), log: log)
        let stats = await w.statistics
        let delivered = energy(transport.deliveredRequests).map(\.1)
        #expect(stats.dropped[.queueFull] ?? 0 > 0)
        // What was delivered is in order, and the lost windows are one run from the outage's start.
        #expect(delivered == delivered.sorted())
        let lost = Set(1...800).subtracting(delivered.map { Int($0) })
        #expect(!lost.isEmpty)
        #expect(lost.max()! - lost.min()! + 1 == lost.count)
        #expect(lost.min()! >= 80)
        #expect(log.contains("dropped the oldest batch"))
    }

    /// The backoff grows to its maximum (30 s) and stays there while failures continue, whatever is
    /// dropped meanwhile: a down receiver is not asked once a second forever.
    @Test func backoffGrowsToItsMaximumAndStaysThere() async throws {
        let log = LogCapture()
        let (_, transport) = try await simulate(seconds: 300, outage: .seconds(2)..<(.seconds(10_000)), maxQueuedBatches: 200, log: log)
        // Attempts: the first at the 4 s tick, then 0.5, 1, 2, 4, 8, 16, 30, 30, … later.
        let attempts = transport.bodies.count
        #expect(attempts <= 7 + (300 - 36) / 30 + 2)
        #expect(log.count("in 30.0 seconds") >= 5)
    }

    @Test func withAFullQueueTheReceiverIsAskedOncePerPushNotPerSecond() async throws {
        let log = LogCapture()
        let (_, transport) = try await simulate(seconds: 120, outage: .seconds(2)..<(.seconds(10_000)), maxQueuedBatches: 2, log: log)
        // One attempt per push tick (4 s) at most, once the queue is full, plus the backoff's.
        #expect(transport.bodies.count <= 120 / 4 + 8)
        #expect(log.contains("in 30.0 seconds"))
    }
}
