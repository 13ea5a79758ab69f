import Foundation
import RAPLBackend
import Support
import Synchronization
import SystemPackage
import TestSupport
import Testing

@testable import Exporter

/// A package counter (2^-14 J) that advances by `step` at every read from just below its 32-bit wrap, and
/// a DRAM counter that stays at 5.
func steppingBackend(step: UInt64) -> ScriptedBackend {
    ScriptedBackend(
        [
            CounterSpec(domain: Domain(.package, socket: 0), unit: .joulesPowerOfTwo(14), source: "step"),
            CounterSpec(domain: Domain(.dram, socket: 0), unit: .microjoule, source: "flat"),
        ],
        modulus: UInt128(1) << 32, steps: [step, 0], start: [0xFFFF_FF00, 5]
    )
}

final class RecordingSink: WindowSink {
    private let recorded = Mutex<(windows: [EnergyWindow], batchEnds: [Int])>(([], []))
    var windows: [EnergyWindow] { recorded.withLock { $0.windows } }
    /// For each `batchHandedOver()`, how many windows the sink had then.
    var batchEnds: [Int] { recorded.withLock { $0.batchEnds } }
    func accept(_ window: borrowing EnergyWindow) {
        let copy = copy window
        recorded.withLock { $0.windows.append(copy) }
    }
    func batchHandedOver() {
        recorded.withLock { $0.batchEnds.append($0.windows.count) }
    }
}

/// A manual sampling timer: time moves only when the test advances it; `wait` blocks the sampling
/// thread until then. The test side waits for the sampler's next wait (state, not wall time; the
/// 10 s limit only turns a hang into a failure).
final class ManualTimer: SamplingTimer, @unchecked Sendable {
    private let condition = NSCondition()
    private var current: Duration = .zero
    private var waitingFor: Duration?
    private var stopped = false

    func now() -> Duration {
        condition.lock()
        defer { condition.unlock() }
        return current
    }

    func wait(until deadline: Duration) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !stopped && current < deadline {
            waitingFor = deadline
            condition.broadcast()
            condition.wait()
        }
        waitingFor = nil
        return !stopped
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    func advance(by d: Duration) {
        condition.lock()
        current += d
        condition.broadcast()
        condition.unlock()
    }

    /// The deadline the sampler waits for, if it waits for one still ahead.
    private func pendingDeadline() -> Duration? {
        condition.lock()
        defer { condition.unlock() }
        if let w = waitingFor, w > current { return w }
        return nil
    }

    /// Yields until the sampler waits for a deadline still ahead; returns that deadline (nil after 10 s).
    /// It must not block: the sampler's service task needs the cooperative pool to start the thread.
    func nextWait() async -> Duration? {
        let limit = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < limit {
            if let waiting = pendingDeadline() { return waiting }
            await Task.yield()
        }
        return nil
    }
}

@Suite struct SamplerTests {
    @Test func windowsAreBackToBackExactAndTheLastIsClosedOnShutdown() async throws {
        let backend = steppingBackend(step: 1000)
        let timer = ManualTimer()
        let sink = RecordingSink()
        let sampler = Sampler(
            meter: EnergyMeter(backend: backend), interval: .milliseconds(100), sink: sink, timer: timer, wallClock: TestWallClock())
        let task = Task { try await sampler.run() }
        for _ in 0..<5 {
            #expect(await timer.nextWait() != nil)
            timer.advance(by: .milliseconds(100))
        }
        #expect(await timer.nextWait() == .milliseconds(600))
        timer.advance(by: .milliseconds(30))  // part of a window, then shutdown
        task.cancel()
        try await task.value
        let windows = sink.windows
        #expect(windows.count == 6)
        #expect(windows.dropLast().allSatisfy { $0.duration == .milliseconds(100) })
        #expect(windows.last?.duration == .milliseconds(30))
        // Each window's end is the next one's start: no gaps.
        for (a, b) in zip(windows, windows.dropFirst()) { #expect(a.endMicroseconds == b.startMicroseconds) }
        // The sum over windows is exactly the conversion of the counter's total change (it wrapped).
        let total = windows.reduce(UInt64(0)) { $0 + $1.energy[0]! }
        #expect(total == EnergyUnit.joulesPowerOfTwo(14).microjoules(UInt128(1000 * (backend.reads / 2 - 1))))
        #expect(windows.allSatisfy { $0.energy[1] == 0 })
    }

    @Test func aLateWakeUpIsCountedAndTheWindowStaysExact() async throws {
        let backend = steppingBackend(step: 10)
        let timer = ManualTimer()
        let sink = RecordingSink()
        let sampler = Sampler(
            meter: EnergyMeter(backend: backend), interval: .milliseconds(100), sink: sink, timer: timer, wallClock: TestWallClock())
        let task = Task { try await sampler.run() }
        #expect(await timer.nextWait() == .milliseconds(100))
        timer.advance(by: .milliseconds(250))  // deadline at 100 ms, woke at 250 ms: late, 200 ms missed
        #expect(await timer.nextWait() == .milliseconds(300))
        timer.advance(by: .milliseconds(50))
        #expect(await timer.nextWait() == .milliseconds(400))
        task.cancel()
        try await task.value
        let windows = sink.windows
        #expect(windows[0].duration == .milliseconds(250))
        #expect(windows[0].lateWindows == 1)
        #expect(windows[0].missedWindows == 1)
        #expect(windows[1].duration == .milliseconds(50))
        #expect(windows.map { $0.energy[0]! }.reduce(0, +) == EnergyUnit.joulesPowerOfTwo(14).microjoules(UInt128(10 * (backend.reads / 2 - 1))))
    }

    /// The sampling thread names itself and sets its own timer slack (prctl through the C shim), as the
    /// kernel then reports in /proc.
    @Test func aThreadNamesItselfAndSetsItsOwnTimerSlack() async throws {
        let read = try await withCheckedThrowingContinuation { (done: CheckedContinuation<String, any Error>) in
            do {
                try DedicatedThread.start(name: "slack-test-with-a-long-name") {
                    let set = Result { () throws(Errno) in try TimerSlack.set(nanoseconds: 1234) }
                    let tid = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self"))?.split(separator: "/").last
                    let slack = tid.flatMap { try? String(contentsOfFile: "/proc/\($0)/timerslack_ns", encoding: .utf8) }
                    let comm = tid.flatMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
                    let trim: (String?) -> String = { $0?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?" }
                    done.resume(returning: "\((try? set.get()) != nil) \(trim(slack)) \((try? TimerSlack.current()) ?? -1) \(trim(comm))")
                }
            } catch {
                done.resume(throwing: error)
            }
        }
        #expect(read == "true 1234 1234 slack-test-with")
    }

    /// The real timer: a wait for a deadline in the past returns at once, stop() ends a long wait, and
    /// every later wait returns false.
    @Test func monotonicTimerWaitsForAbsoluteDeadlinesAndStops() async throws {
        let timer = MonotonicTimer()
        let start = timer.now()
        #expect(timer.wait(until: start - .seconds(1)))
        #expect(timer.wait(until: start + .milliseconds(2)))
        #expect(timer.now() >= start + .milliseconds(2))
        let waiting = Task.detached { timer.wait(until: timer.now() + .seconds(3600)) }
        timer.stop()
        #expect(await waiting.value == false)
        #expect(timer.wait(until: timer.now() + .seconds(3600)) == false)
    }

    @Test func histogramPercentiles() {
        var h = MicrosecondHistogram()
        for v in 1...100 { h.record(microseconds: v) }
        h.record(microseconds: 50_000)
        #expect(h.count == 101)
        #expect(h.percentile(0.5) == 51)
        #expect(h.percentile(0.99) == 100)
        #expect(h.percentile(1) == 50_000)
        #expect(h.max == 50_000)
    }

    @Test func scheduleArithmetic() {
        var s = WindowSchedule(interval: .milliseconds(100))
        #expect(s.lateThreshold == .milliseconds(5))
        s.wokeUp(at: .milliseconds(101))
        #expect(s.late == 0 && s.nextDeadline == .milliseconds(200))
        s.wokeUp(at: .milliseconds(210))
        #expect(s.late == 1 && s.missed == 0 && s.nextDeadline == .milliseconds(300))
        s.wokeUp(at: .milliseconds(720))
        #expect(s.missed == 4 && s.nextDeadline == .milliseconds(800))
        // Window lengths 101, 109, 510 ms: errors 1, 9, 410 ms.
        #expect(s.lengthError.count == 3)
        #expect(s.lengthError.max == 410_000)
        #expect(s.lengthError.percentile(0.5) == 9000)
    }
}

@Suite struct OutputFormatTests {
    @Test func stdoutLineIsTheSeedDict() {
        let sink = StdoutSink(style: .seed)
        let w = window([123_456, 3_456], endMicros: 1_762_678_050_223_456, duration: .milliseconds(100))
        #expect(sink.line(w) == #"{"timestamp":"2025-11-09T08:47:30.123456+00:00","duration":0.1,"package-0":123456,"core":3456}"#)
    }

    @Test func duplicateComponentsAcrossSocketsGetTheirPlace() {
        let domains = [Domain(.package, socket: 0), Domain(.core, socket: 0), Domain(.package, socket: 1), Domain(.core, socket: 1)]
        let w = window([1, 2, nil, 4], domains: domains, endMicros: 1_000_000)
        #expect(StdoutSink(style: .seed).line(w).hasSuffix(#""package-0":1,"core@0":2,"core@1":4}"#))
        #expect(StdoutSink(style: .pyjoules).line(w).hasSuffix(#""package_0":1,"core_0":2,"core_1":4}"#))
    }

    @Test func isoAndHTTPDates() {
        #expect(CivilTime.iso8601(microseconds: 0) == "1970-01-01T00:00:00.000000+00:00")
        #expect(CivilTime.iso8601(microseconds: 951_782_400_000_001) == "2000-02-29T00:00:00.000001+00:00")
        #expect(CivilTime.parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(CivilTime.parseHTTPDate("Sunday, 06-Nov-94 08:49:37 GMT") == nil)
    }

    @Test func endpoints() {
        let a = RemoteWriteEndpoint("http://prometheus:9090/api/v1/write")
        #expect(a?.host == "prometheus" && a?.port == 9090 && a?.target == "/api/v1/write" && a?.tls == false)
        let b = RemoteWriteEndpoint("https://[::1]/write?tenant=a#frag")
        #expect(b?.host == "::1" && b?.port == 443 && b?.target == "/write?tenant=a" && b?.tls == true)
        #expect(RemoteWriteEndpoint("HTTP://h")?.target == "/")
        for bad in ["ftp://h/", "http://", "http://h:0/", "http://h:99999/", "http://user:pw@h/", "prometheus:9090", "http://h:x/"] {
            #expect(RemoteWriteEndpoint(bad) == nil, "\(bad)")
        }
    }
}

/// Wall time that follows a manual timer, plus an offset a test can step.
final class FollowingWallClock: WallClock {
    let timer: ManualTimer
    let offset = Mutex<Int64>(1_800_000_000_000_000)
    init(_ timer: ManualTimer) { self.timer = timer }
    func nowMicroseconds() -> Int64 {
        let (s, a) = timer.now().components
        return offset.withLock { $0 } + s * 1_000_000 + a / 1_000_000_000_000
    }
}

@Suite struct SamplerGlitchAndClockTests {
    /// A counter that steps back is no energy for that window (nil, counted), the windows around it
    /// stay exact; a wall-clock step is detected and counted while window lengths stay monotonic.
    @Test func aGlitchIsNoEnergyAndAClockStepIsCounted() async throws {
        let timer = ManualTimer()
        let wall = FollowingWallClock(timer)
        let sink = RecordingSink()
        let backend = ScriptedBackend(
            [CounterSpec(domain: Domain(.package, socket: 0), unit: .microjoule, source: "sequence")],
            modulus: 262_143_328_851, queued: [[1000, 2000, 3000, 2999, 4000]], start: [5000]
        )
        let sampler = Sampler(meter: EnergyMeter(backend: backend), interval: .milliseconds(100), sink: sink, timer: timer, wallClock: wall)
        let task = Task { try await sampler.run() }
        for k in 0..<5 {
            #expect(await timer.nextWait() != nil)
            if k == 2 { wall.offset.withLock { $0 -= 30_000_000 } }  // the wall clock steps back 30 s
            timer.advance(by: .milliseconds(100))
        }
        #expect(await timer.nextWait() != nil)
        task.cancel()
        try await task.value
        let windows = sink.windows
        #expect(windows.prefix(5).map { $0.energy[0] } == [1000, 1000, nil, 1001, 1000])
        #expect(windows[2].glitches == [1])
        #expect(windows.last?.glitches == [1])
        #expect(windows.allSatisfy { $0.duration <= .milliseconds(100) })
        #expect(windows[2].clockStepMicroseconds == -30_000_000)
        #expect(windows.last?.clockSteps == 1)
    }
}

@Suite struct SamplerBatchingTests {
    /// Runs a sampler over `backend` for `wakes` deadlines of 100 ms (the last one cut short by shutdown)
    /// and returns the windows its sink got, and when: the count it had before each wake-up.
    func run(
        _ backend: ScriptedBackend, batching: Duration, wakes: Int, health: HealthFile? = nil, interval: Duration = .milliseconds(100)
    ) async throws -> (windows: [EnergyWindow], seen: [Int], batchEnds: [Int]) {
        let timer = ManualTimer()
        let sink = RecordingSink()
        let sampler = Sampler(
            meter: EnergyMeter(backend: backend), interval: interval, sink: sink, timer: timer, wallClock: FollowingWallClock(timer),
            health: health, batching: batching)
        let task = Task { try await sampler.run() }
        var seen: [Int] = []
        for _ in 0..<wakes {
            #expect(await timer.nextWait() != nil)
            seen.append(sink.windows.count)
            timer.advance(by: interval)
        }
        #expect(await timer.nextWait() != nil)
        timer.advance(by: interval * 0.4)
        task.cancel()
        try await task.value
        return (sink.windows, seen, sink.batchEnds)
    }

    /// Closing windows in batches changes when they reach the sink, nothing else: the same windows, in
    /// the same order, with the same energy, statuses, errors, glitches and timestamps as closing each at
    /// its deadline — over a counter that wraps, glitches, and fails twice in a row (so the retry back-off
    /// is decided from reads applied later than they were taken).
    @Test func batchedWindowsAreTheWindowsClosedAtOnce() async throws {
        func backend() -> ScriptedBackend {
            let b = ScriptedBackend(
                [
                    CounterSpec(domain: Domain(.package, socket: 0), unit: .joulesPowerOfTwo(14), source: "step"),
                    CounterSpec(domain: Domain(.dram, socket: 0), unit: .microjoule, source: "sequence"),
                ],
                modulus: UInt128(1) << 32, queued: [[], [1000, 2000, 1500, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000, 11_000, 12_000]],
                start: [0xFFFF_F000, 500])
            b.steps = [700, 0]
            b.failing = [1: [4, 5]]
            return b
        }
        let direct = try await run(backend(), batching: .zero, wakes: 25)
        let batched = try await run(backend(), batching: .seconds(1), wakes: 25)
        #expect(direct.windows.count == 26)
        #expect(batched.windows.count == direct.windows.count)
        for (a, b) in zip(direct.windows, batched.windows) {
            #expect(a.energy == b.energy)
            #expect(a.stuck == b.stuck)
            #expect(a.readErrors == b.readErrors)
            #expect(a.glitches == b.glitches)
            #expect(a.startMicroseconds == b.startMicroseconds && a.endMicroseconds == b.endMicroseconds && a.duration == b.duration)
            #expect(a.lateWindows == b.lateWindows && a.missedWindows == b.missedWindows)
        }
        // The script's glitch and failures show in both.
        #expect(direct.windows.contains { $0.glitches[1] == 1 })
        #expect(direct.windows.last?.readErrors[1] ?? 0 >= 1)
        // Closing at once: each window is with the sink by the next wait. In batches: the first at once
        // (a spool has a point to restart from), then ten at a time, once a second.
        #expect(direct.seen == Array(0..<25))
        #expect(batched.seen == (0..<25).map { k in k == 0 ? 0 : (k - 1) / 10 * 10 + 1 })
    }

    /// Each batch ends with one `batchHandedOver()` (the remote writer pushes then), the first window's
    /// too (a spool's first record then comes at once). None when every window is handed over at its
    /// deadline.
    @Test func eachBatchRingsOnce() async throws {
        let batched = try await run(steppingBackend(step: 100), batching: .seconds(1), wakes: 25)
        // Windows 1 (at once), 2–11, 12–21, then 22–26 at shutdown.
        #expect(batched.batchEnds == [1, 11, 21, 26])
        let direct = try await run(steppingBackend(step: 100), batching: .zero, wakes: 25)
        #expect(direct.batchEnds.isEmpty)
    }

    /// Batches keep their period when it is not a whole number of windows: each comes at the first
    /// deadline at or after a point of a grid from the first window (4 s of 300 ms windows: 4.2 s after
    /// it, then 8.1 s, 12 s — not every 4.2 s, which would make pushes drift later and later).
    @Test func batchesStayOnTheirGridWhenWindowsDoNotDivideIt() async throws {
        let run = try await run(steppingBackend(step: 100), batching: .seconds(4), wakes: 45, interval: .milliseconds(300))
        // Window k ends at 0.3 k s; the first at 0.3 s starts the grid (4.3, 8.3, 12.3 s): windows 15 (4.5 s),
        // 28 (8.4 s) and 41 (12.3 s) end the batches, then the shutdown's.
        #expect(run.batchEnds == [1, 15, 28, 41, 46])
    }

    /// The heartbeat is written once per batch, with the batch's last window: not once per second of
    /// windows in it (a four-second batch rewrote the file four times in a row).
    @Test func theHeartbeatIsWrittenOncePerBatch() async throws {
        let dir = TempDirectory()
        let health = HealthFile(path: dir.path + "/health", scrapeInterval: .milliseconds(100), pushInterval: .seconds(4))
        #expect(health.writes == 1)
        let run = try await run(steppingBackend(step: 100), batching: .seconds(4), wakes: 95, health: health)
        // The first window at once, then one batch per 4 s, and the last window at shutdown.
        let batches = zip(run.seen, run.seen.dropFirst()).filter { $0 != $1 }.count + 1
        #expect(batches == 4)
        #expect(health.writes == 1 + batches)
        #expect(health.current.lastWindowMillis == run.windows.last.map { $0.endMicroseconds / 1000 })
    }

    /// Each window at once where it must be seen as it closes or nothing pushes; otherwise one batch per
    /// push interval, at most `maximumBatching`, whose heartbeat a health check at 10 Hz still calls
    /// healthy a second later.
    /// Pushes follow batches when a batch is one push interval's windows and holds at least two of them;
    /// otherwise the writer keeps its own timer.
    @Test func pushesFollowBatchesOnlyWhenABatchIsAPushInterval() {
        #expect(Sampler.pushesFollowBatches(batching: .seconds(4), pushInterval: .seconds(4), scrapeInterval: .milliseconds(100)))
        #expect(Sampler.pushesFollowBatches(batching: .seconds(2), pushInterval: .seconds(2), scrapeInterval: .seconds(1)))
        // Batches of 5 s for a 60 s push, each window at once, a window as long as a push, or no push.
        #expect(!Sampler.pushesFollowBatches(batching: .seconds(5), pushInterval: .seconds(60), scrapeInterval: .milliseconds(100)))
        #expect(!Sampler.pushesFollowBatches(batching: .zero, pushInterval: .seconds(4), scrapeInterval: .milliseconds(100)))
        #expect(!Sampler.pushesFollowBatches(batching: .seconds(4), pushInterval: .seconds(4), scrapeInterval: .seconds(3)))
        #expect(!Sampler.pushesFollowBatches(batching: .seconds(4), pushInterval: nil, scrapeInterval: .milliseconds(100)))
    }

    @Test func batchingFollowsThePushIntervalUpToItsMaximum() {
        #expect(Sampler.batching(pushInterval: .seconds(4), eachWindowAtOnce: false) == .seconds(4))
        #expect(Sampler.batching(pushInterval: .milliseconds(500), eachWindowAtOnce: false) == .milliseconds(500))
        #expect(Sampler.batching(pushInterval: .seconds(60), eachWindowAtOnce: false) == Sampler.maximumBatching)
        #expect(Sampler.batching(pushInterval: .seconds(4), eachWindowAtOnce: true) == .zero)
        #expect(Sampler.batching(pushInterval: nil, eachWindowAtOnce: false) == .zero)
        var heartbeat = HealthFile.State()
        heartbeat.pid = 1
        heartbeat.scrapeInterval = 0.1
        heartbeat.lastWindowMillis = 100_000
        let oldest = heartbeat.lastWindowMillis + (Sampler.maximumBatching.components.seconds + 1) * 1000
        #expect(heartbeat.problem(nowMillis: oldest, processAlive: true) == nil)
    }
}
