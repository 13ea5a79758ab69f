import RAPLBackend
import Support
import TestSupport
import Testing

@testable import Exporter

/// The wall clock steps while windows stay exact on the monotonic clock: steps are detected and
/// counted, no energy is lost, and no window is stamped further from its time than the step forces.
@Suite struct ClockStepTests {
    let endpoint = RemoteWriteEndpoint("http://127.0.0.1:9/api/v1/write")!
    static let t = Int64(1_800_000_000_000_000)

    @Test func stepsAreDetectedAgainstTheMonotonicClock() {
        var steps = WallClockSteps(wall: Self.t)
        // NTP slewing (500 ppm) and scheduling jitter are no step.
        #expect(steps.observe(wall: Self.t + 100_050, monotonic: .milliseconds(100)) == 0)
        #expect(steps.observe(wall: Self.t + 200_000, monotonic: .milliseconds(200)) == 0)
        // 30 s back.
        #expect(steps.observe(wall: Self.t + 300_000 - 30_000_000, monotonic: .milliseconds(300)) == -30_000_000)
        // Then steady again on the new time.
        #expect(steps.observe(wall: Self.t + 400_000 - 30_000_000, monotonic: .milliseconds(400)) == 0)
        // An hour forward.
        #expect(steps.observe(wall: Self.t + 500_000 + 3_570_000_000, monotonic: .milliseconds(500)) == 3_600_000_000)
        #expect(steps.count == 2)
    }

    func writer(_ transport: RecordingTransport) -> RemoteWriter<TestClock> {
        var settings = RemoteWriteSettings(endpoint: endpoint, pushInterval: .seconds(4))
        settings.series.cumulative = true
        return RemoteWriter(settings: settings, transport: transport, clock: TestClock(), wallClock: TestWallClock(), random: { 0.5 })
    }

    /// 30 s back: the windows of the next 30 s are held, not crowded 1 ms apart after the last
    /// timestamp; their energy arrives with the first window stamped after it. Nothing is lost and
    /// timestamps only increase.
    @Test func aStepBackHoldsWindowsUntilTheClockPassesTheLastTimestamp() async {
        let transport = RecordingTransport()
        let w = writer(transport)
        var wall = Self.t
        var sent: UInt64 = 0
        for k in 1...600 {  // 60 s at 10 Hz; the clock steps back 30 s after 10 s
            wall += 100_000
            if k == 101 { wall -= 30_000_000 }
            w.accept(window([UInt64(k)], endMicros: wall))
            sent += UInt64(k)
        }
        await w.cutBatch()
        await w.drain(until: nil)
        let samples = energy(transport.requests)
        #expect(samples.map(\.1).reduce(0, +) == Double(sent))
        #expect(samples.map(\.0) == samples.map(\.0).sorted())
        #expect(Set(samples.map(\.0)).count == samples.count)
        // Windows 101…399 (stamped before the last timestamp, window 100's) were held; window 400,
        // stamped at it, goes 1 ms after it and carries their energy.
        #expect(samples.count == 600 - 299)
        let carrier = samples[100]
        #expect(carrier.0 == (Self.t + 10_000_000) / 1000 + 1)
        #expect(carrier.1 == Double((101...400).reduce(0, +)))
        #expect(samples[101].0 == (Self.t + 10_100_000) / 1000)
        // The cumulative counter never goes back.
        let totals = transport.requests.flatMap { $0.samples(["__name__": "rapl_energy_joules_total"]) }.map(\.1)
        #expect(totals == totals.sorted())
        #expect(totals.last == Double(sent) / 1e6)
    }

    @Test func aForwardStepIsFollowedAtOnce() async {
        let transport = RecordingTransport()
        let w = writer(transport)
        w.accept(window([1], endMicros: Self.t + 100_000))
        w.accept(window([2], endMicros: Self.t + 200_000 + 3_600_000_000))
        w.accept(window([3], endMicros: Self.t + 300_000 + 3_600_000_000))
        await w.cutBatch()
        await w.drain(until: nil)
        #expect(energy(transport.requests).map(\.0) == [Self.t / 1000 + 100, (Self.t + 3_600_200_000) / 1000, (Self.t + 3_600_300_000) / 1000])
    }

    /// A step back beyond the sample age cap is not waited out (that could be years after a bad RTC):
    /// windows are stamped past the last timestamp as they come.
    @Test func aStepBackBeyondTheAgeCapIsNotWaitedOut() async {
        let transport = RecordingTransport()
        let w = writer(transport)
        w.accept(window([1], endMicros: Self.t))
        w.accept(window([2], endMicros: Self.t - 86_400_000_000))
        await w.cutBatch()
        await w.drain(until: nil)
        #expect(energy(transport.requests).map(\.0) == [Self.t / 1000, Self.t / 1000 + 1])
    }

    @Test func stepsAreCountedInTheSelfMetrics() async {
        let transport = RecordingTransport()
        let w = writer(transport)
        var win = window([1], endMicros: Self.t)
        win.clockSteps = 3
        w.accept(win)
        await w.cutBatch()
        await w.drain(until: nil)
        #expect(transport.requests[0].samples(["__name__": "rapl_exporter_clock_steps_total"]).map(\.1) == [3])
    }
}
