import Logging
import RAPLBackend
import ServiceLifecycle
import Support
import Synchronization
import SystemPackage

/// One measurement window: the energy each domain used between two consecutive reads.
public struct EnergyWindow: Sendable {
    /// Wall-clock start and end, µs since the epoch. Remote write stamps samples with the end.
    public var startMicroseconds: Int64
    public var endMicroseconds: Int64
    /// Monotonic length of the window.
    public var duration: Duration
    public var domains: [Domain]
    /// µJ per domain (same order as `domains`); nil where the domain could not be read at the end of
    /// this window (its energy then appears in its next readable window, so none is lost), or where
    /// its counter glitched (an impossible step is not energy: see `EnergyMeter.glitches`).
    public var energy: [UInt64?]
    /// True for domains whose counter has not changed for a while (see `EnergyMeter.stuckAfter`).
    public var stuck: [Bool]
    /// Cumulative read failures per domain.
    public var readErrors: [UInt64]
    /// Cumulative impossible counter steps per domain.
    public var glitches: [UInt64]
    /// Cumulative scheduling figures.
    public var lateWindows: UInt64
    public var missedWindows: UInt64
    /// Wall-clock steps seen so far (the wall clock moved more than ``WallClockSteps/threshold`` away
    /// from the monotonic clock within one window), and this window's step in µs (0 when none).
    public var clockSteps: UInt64
    public var clockStepMicroseconds: Int64

    // What the spool records (filled only when the sampler is told to: `recordsCounters`).
    /// Every raw counter's value at the window's end (the meter's counter order).
    public var counterValues: [UInt64] = []
    /// The counters and the moduli they wrap at; set on the first window and when a counter is added.
    public var counters: [CounterSpec] = []
    public var counterModuli: [UInt128] = []
    /// CLOCK_BOOTTIME at the window's end, µs.
    public var bootMicroseconds: Int64 = 0
    /// Set on the run's first window when a spool held an earlier run's: see ``RestartCheck``.
    public var restart: RestartMark?
}

/// Receives windows: the remote writer, the stdout printer.
public protocol WindowSink: Sendable {
    /// Called on the sampling thread at the end of every window, so it must return quickly (the remote
    /// writer appends to a locked buffer; stdout is one `write(2)`). The sampler reuses the window's
    /// arrays for the next window: a sink that keeps them (rather than copying their elements) makes the
    /// next window allocate.
    func accept(_ window: borrowing EnergyWindow)
    /// Called on the sampling thread after the last window of each batch, when the sampler hands windows
    /// over in batches (see `Sampler.batching`): the remote writer pushes then. Does nothing by default.
    func batchHandedOver()
}

extension WindowSink {
    public func batchHandedOver() {}
}

/// Decides, from a wake-up time, how late a window is and which deadline comes next.
/// Deadlines are absolute (`origin + k × interval`), so sampling never drifts. Kept in integer
/// nanoseconds: it runs at every window, and `Duration`'s multiplication by an integer is an
/// unspecialised generic call (a runtime metadata look-up each time).
public struct WindowSchedule: Sendable, Equatable {
    public var interval: Duration { Duration(wholeNanoseconds: intervalNs) }
    /// A wake-up later than this after its deadline counts as late.
    public var lateThreshold: Duration { Duration(wholeNanoseconds: lateThresholdNs) }
    /// Index of the next deadline.
    public private(set) var next: Int64 = 1
    public private(set) var late: UInt64 = 0
    public private(set) var missed: UInt64 = 0
    public var maxLateness: Duration { Duration(wholeNanoseconds: maxLatenessNs) }
    /// |window length − interval| of every window so far, in µs.
    public private(set) var lengthError = MicrosecondHistogram()
    private let intervalNs: Int64
    private let lateThresholdNs: Int64
    private var maxLatenessNs: Int64 = 0
    private var previousWakeNs: Int64 = 0

    public init(interval: Duration, lateThreshold: Duration? = nil) {
        intervalNs = interval.wholeNanoseconds
        lateThresholdNs = (lateThreshold ?? min(interval / 10, .milliseconds(5))).wholeNanoseconds
    }

    /// The offset from the origin of the next deadline.
    public var nextDeadline: Duration { Duration(wholeNanoseconds: nextDeadlineNanoseconds) }
    var nextDeadlineNanoseconds: Int64 { intervalNs &* next }

    /// Records a wake-up at `elapsed` (since the origin) for the current deadline and moves to the next
    /// one. A wake-up past later deadlines skips them: they are counted as missed, and the window simply
    /// lasts longer — its energy is still exact.
    public mutating func wokeUp(at elapsed: Duration) { wokeUp(atNanoseconds: elapsed.wholeNanoseconds) }

    /// ``wokeUp(at:)`` in nanoseconds since the origin.
    mutating func wokeUp(atNanoseconds now: Int64) {
        recordLength(endingAtNanoseconds: now)
        advance(atNanoseconds: now)
    }

    /// The window that ended at `now` (nanoseconds since the origin) into ``lengthError``. The sampling
    /// thread records a batch's windows when it closes them, not at each deadline: the histogram's
    /// lines are then touched on a warm CPU (docs/performance.md).
    mutating func recordLength(endingAtNanoseconds now: Int64) {
        let length = now &- previousWakeNs
        previousWakeNs = now
        let error = length > intervalNs ? length &- intervalNs : intervalNs &- length
        lengthError.record(microseconds: Int(error / 1000))
    }

    /// The deadline part of ``wokeUp(at:)``: lateness, missed deadlines and the next deadline.
    mutating func advance(atNanoseconds now: Int64) {
        let lateness = now &- intervalNs &* next
        if lateness > lateThresholdNs { late += 1 }
        if lateness > maxLatenessNs { maxLatenessNs = lateness }
        var skip: Int64 = 0
        if lateness >= intervalNs {
            skip = lateness / intervalNs
            missed += UInt64(skip)
        }
        next += 1 + skip
    }
}

/// Detects steps of the wall clock: within one window, the wall clock moved more (or less) than the
/// monotonic clock by over `threshold`. NTP's slewing (at most 500 ppm) never comes near it; a step by
/// ntpd (over 128 ms), chrony's makestep, `date -s` or a resumed VM does.
public struct WallClockSteps: Sendable {
    public static let threshold: Int64 = 100_000  // µs
    public private(set) var count: UInt64 = 0
    private var lastWall: Int64
    private var lastMonotonic: Int64 = 0

    public init(wall: Int64) { lastWall = wall }

    /// The step in µs since the last observation (0 below the threshold); `monotonic` is time since
    /// the first observation.
    public mutating func observe(wall: Int64, monotonic: Duration) -> Int64 {
        let (seconds, attoseconds) = monotonic.components
        let mono = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        let step = (wall - lastWall) - (mono - lastMonotonic)
        lastWall = wall
        lastMonotonic = mono
        guard abs(step) > Self.threshold else { return 0 }
        count += 1
        return step
    }
}

/// A fixed-size histogram of microseconds (1 µs buckets up to 10 ms, then one overflow bucket with the
/// exact maximum): recording allocates nothing.
public struct MicrosecondHistogram: Sendable, Equatable {
    private var buckets = [UInt32](repeating: 0, count: 10_001)
    public private(set) var count: UInt64 = 0
    public private(set) var max = 0

    public init() {}

    public mutating func record(microseconds: Int) {
        let v = Swift.max(0, microseconds)
        buckets[Swift.min(v, buckets.count - 1)] &+= 1
        count += 1
        if v > max { max = v }
    }

    /// The smallest value v such that at least `fraction` of the records are ≤ v (µs).
    public func percentile(_ fraction: Double) -> Int {
        guard count > 0 else { return 0 }
        let target = UInt64((Double(count) * fraction).rounded(.up))
        var seen: UInt64 = 0
        for (i, n) in buckets.enumerated() {
            seen += UInt64(n)
            if seen >= target { return i == buckets.count - 1 ? max : i }
        }
        return max
    }
}

/// Reads the meter at the end of every window, back to back on a monotonic clock, and hands each
/// window to a sink.
///
/// Sampling runs on a thread of its own that sleeps until each absolute deadline (`SamplingTimer`,
/// injected in tests): at 1 kHz the per-window cost is the wait, the reads and a locked append — no
/// async job switch, no allocation. Window k's energy is the meter's total at its end minus the total
/// at its start, so the windows of a run add up to the counters' change exactly. On graceful shutdown
/// (SIGTERM/SIGINT, or `--duration`) the current window is closed early and sent as the final one.
public final class Sampler: Service {
    public struct ThreadNotStarted: Error, CustomStringConvertible {
        public let errno: Errno
        public var description: String {
            "cannot start the sampling thread (pthread_create: \(errno)); check the container's pids limit (pids.max) and RLIMIT_NPROC"
        }
    }

    /// The meter is not Sendable: it is handed over once to the sampling thread.
    private let meter: Mutex<EnergyMeter?>
    private let timer: any SamplingTimer
    private let wallClock: any WallClock
    private let interval: Duration
    private let sink: any WindowSink
    private let refreshInterval: Duration
    private let health: HealthFile?
    /// Fill the windows' raw counter values and boot time (for the spool).
    private let recordsCounters: Bool
    /// With a spool that held an earlier run's windows: whether its downtime can be accounted.
    private let restart: RestartCheck?
    /// Windows are closed and handed to the sink in batches at most this far apart (zero: each at its
    /// deadline); see `sample(_:)`.
    private let batching: Duration
    private let logger: Logger

    public init(
        meter: sending EnergyMeter,
        interval: Duration,
        sink: any WindowSink,
        timer: any SamplingTimer = MonotonicTimer(),
        wallClock: any WallClock = SystemWallClock(),
        refreshInterval: Duration = .seconds(10),
        health: HealthFile? = nil,
        recordsCounters: Bool = false,
        restart: RestartCheck? = nil,
        batching: Duration = .zero,
        logger: Logger = Logger(label: "rapl-exporter.sampler")
    ) {
        self.batching = batching
        self.health = health
        self.recordsCounters = recordsCounters || restart != nil
        self.restart = restart
        self.meter = Mutex(meter)
        self.timer = timer
        self.wallClock = wallClock
        self.interval = interval
        self.sink = sink
        self.refreshInterval = refreshInterval
        self.logger = logger
    }

    public func run() async throws {
        // One child waits for the sampling thread to end; the other waits for graceful shutdown (or
        // cancellation) and stops the timer, which makes the thread close its final window and end.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
                    do throws(Errno) {
                        try DedicatedThread.start(name: "rapl-sampler") {
                            if let meter = self.meter.withLock({ $0.take() }) { self.sample(meter) }
                            done.resume()
                        }
                    } catch {
                        done.resume(throwing: ThreadNotStarted(errno: error))
                    }
                }
            }
            group.addTask {
                do { try await gracefulShutdown() } catch {}
                self.timer.stop()
            }
            defer { timer.stop() }
            try await group.next()
        }
    }

    /// The longest ``batching`` the daemon uses: the heartbeat is written as a batch is handed over, and
    /// this keeps it well inside the 10 s a health check allows before it calls sampling stuck.
    public static let maximumBatching = Duration.seconds(5)

    /// How far apart windows are handed over (see `sample(_:)`): zero (each at its deadline) when each
    /// window must be seen as it closes or nothing is pushed; otherwise every push interval, since a push
    /// sends nothing sooner, and at most ``maximumBatching``. Each batch wakes the code that closes
    /// windows on a cold CPU, so the fewer batches the less a window costs (docs/performance.md).
    public static func batching(pushInterval: Duration?, eachWindowAtOnce: Bool) -> Duration {
        guard !eachWindowAtOnce, let pushInterval else { return .zero }
        return min(pushInterval, maximumBatching)
    }

    /// Whether the remote writer pushes when a batch is handed over (``WindowSink/batchHandedOver()``)
    /// rather than on a timer of its own: when each batch is one push interval's windows (a push interval
    /// up to ``maximumBatching``) and a push interval holds at least two windows. The push then starts
    /// while the batch is fresh, in the one wake-up the hand-over makes (docs/performance.md), and carries
    /// windows at most one push interval old.
    public static func pushesFollowBatches(batching: Duration, pushInterval: Duration?, scrapeInterval: Duration) -> Bool {
        guard let pushInterval, batching > .zero else { return false }
        return batching == pushInterval && scrapeInterval * 2 <= pushInterval
    }

    /// The raw counter values and boot time the spool records with each window.
    private func recordCounters(_ meter: EnergyMeter, into window: inout EnergyWindow, boot: Int64) {
        meter.copyCounterValues(into: &window.counterValues)
        window.bootMicroseconds = boot
        let moduli = meter.counterModuli
        if window.counterModuli != moduli || window.counters.count != moduli.count {
            window.counters = meter.backend.counters
            window.counterModuli = moduli
        }
    }

    /// The run's first window when a spool held an earlier run's: the gap window carrying the energy
    /// used while the exporter was down, or, when that cannot be known, an empty window that marks the
    /// gap (its cumulative totals start from 0).
    private func openAfterRestart(_ check: RestartCheck, meter: EnergyMeter, window: inout EnergyWindow, nowWall: Int64) {
        let outcome = check.evaluate(
            domains: meter.domains, counters: meter.backend.counters, moduli: meter.counterModuli, values: window.counterValues,
            readable: meter.counterReadable, nowBootMicroseconds: window.bootMicroseconds)
        window.stuck = meter.domains.map { _ in false }
        window.endMicroseconds = nowWall
        switch outcome {
        case .accounted(let gap, let totals, let downtime):
            window.energy = gap.map { $0 }
            window.startMicroseconds = check.anchor.window.timestampMilliseconds * 1000
            window.duration = .microseconds(downtime)
            window.restart = .accounted(totals: totals)
            let joules = Double(gap.reduce(0, &+)) / 1e6
            logger.notice(
                "restart: the \(formatted(Double(downtime) / 1e6, 3)) s since the last spooled window are accounted: \(formatted(joules, 3)) J in one gap window; the cumulative counters continue"
            )
        case .gap(let reason):
            let statuses = meter.statuses
            window.energy = statuses.map { status -> UInt64? in
                switch status {
                case .ok, .stuck: 0
                case .failed, .glitch: nil
                }
            }
            window.startMicroseconds = nowWall
            window.duration = .zero
            window.restart = .gap
            logger.warning(
                "restart: the energy used while the exporter was stopped is not accounted (\(reason)); counted in rapl_exporter_restart_gaps_total, and the cumulative counters start again from 0"
            )
        }
        sink.accept(window)
        window.restart = nil
        window.energy.removeAll(keepingCapacity: true)
        window.endMicroseconds = nowWall
    }

    /// What the sampling thread notes at a deadline, besides the meter's queued raw read: the window is
    /// closed from these when the batch is handed over.
    private struct Wake {
        /// Since the origin, in nanoseconds.
        var elapsed: Int64
        var wall: Int64
        var boot: Int64
        var late: UInt64
        var missed: UInt64
    }

    /// The sampling loop, on the sampling thread; returns after the final window once the timer is stopped.
    ///
    /// At each deadline it only reads the counters (the meter queues the raw values) and notes the time.
    /// Every `batching` it closes the windows noted since the last batch, back to back: the meter applies
    /// each queued read, the window is built and handed to the sink. A wake-up comes back to a CPU whose
    /// caches have lost the sampler's code (docs/performance.md): the reads need the syscalls' code at every
    /// deadline, the arithmetic and the sinks' code only once per batch. The windows, their energy and their
    /// order are those of closing each at once; they reach the sink up to `batching` later.
    private func sample(_ meter: EnergyMeter) {
        // Wake-ups within 0.1 % of the interval (1 µs at 1 kHz) instead of the kernel's default 50 µs.
        let slack = Swift.min(Swift.max(Int(interval / .nanoseconds(1)) / 1000, 1000), 50_000)
        if slack < 50_000 {
            do { try TimerSlack.set(nanoseconds: slack) } catch {
                logger.notice("could not set the sampling thread's timer slack to \(slack) ns (prctl: \(error)); wake-ups may be up to 50 µs late")
            }
        }
        let origin = timer.nowNanoseconds()
        meter.read(now: .zero)
        var schedule = WindowSchedule(interval: interval)
        let startWall = wallClock.nowMicroseconds()
        var lastRefresh = Duration.zero
        logger.info("sampling every \(interval) over \(meter.domains.count) domains with \(meter.backend.kind)")
        var closer = WindowCloser(meter: meter, startWall: startWall)
        if recordsCounters { recordCounters(meter, into: &closer.window, boot: BootClock.nowMicroseconds()) }
        if let restart { openAfterRestart(restart, meter: meter, window: &closer.window, nowWall: startWall) }
        // The wake-ups whose windows are not closed yet (capacity kept: no allocation once grown).
        var wakes: [Wake] = []
        let batchingNs = batching.wholeNanoseconds
        // The first window is handed over at once (a spool then holds a point a restart can continue
        // from as soon as the run samples), then one batch per `batching`, on a grid from that first
        // window: at the first deadline at or after each point of it, so that batches (and the pushes
        // that follow them) keep their period when it is not a whole number of windows.
        var nextBatch = Int64.min
        while true {
            let final = !timer.wait(untilNanoseconds: origin &+ schedule.nextDeadlineNanoseconds)
            let elapsed = timer.nowNanoseconds() &- origin
            let wall = wallClock.nowMicroseconds()
            meter.readCounters(nowNanoseconds: elapsed)
            if !final { schedule.advance(atNanoseconds: elapsed) }
            wakes.append(
                Wake(
                    elapsed: elapsed, wall: wall, boot: recordsCounters ? BootClock.nowMicroseconds() : 0, late: schedule.late,
                    missed: schedule.missed))
            guard final || elapsed >= nextBatch else { continue }
            // The first window's hand-over starts the grid. It rings too: when pushes follow batches, the first
            // push then comes at once, and with it a spool's first record (a point the next start continues
            // from, however soon this run is killed).
            let first = nextBatch == Int64.min
            if batchingNs > 0 {
                nextBatch = first ? elapsed &+ batchingNs : nextBatch &+ batchingNs
                while nextBatch <= elapsed { nextBatch &+= batchingNs }
            }
            for (k, wake) in wakes.enumerated() {
                meter.applyNextRead()
                closer.close(wake, sampler: self)
                // Not the final window, cut short by shutdown.
                if !final || k < wakes.count - 1 { schedule.recordLength(endingAtNanoseconds: wake.elapsed) }
            }
            // The heartbeat once per batch (its last window), not once per second of windows in it: a
            // batch of four seconds rewrote the file four times in a row.
            if let last = wakes.last { health?.windowClosed(atMicroseconds: last.wall) }
            wakes.removeAll(keepingCapacity: true)
            if batchingNs > 0 { sink.batchHandedOver() }
            if final {
                let e = schedule.lengthError
                // A notice: once per run, the figures an operator (and scripts/benchmark) compares runs by.
                let cpu = ThreadCPUTime.current()
                let windows = closer.windows
                let perWindow = (cpu - closer.cpuAfterFirstWindow).seconds * 1e6 / Double(max(windows - 1, 1))
                logger.notice(
                    "sampling stopped after \(windows) windows: \(schedule.late) late and \(schedule.missed) missed windows, worst wake-up \(schedule.maxLateness) late; window length error p50 \(e.percentile(0.5)) µs, p99 \(e.percentile(0.99)) µs, max \(e.max) µs; sampling thread CPU \(formatted(cpu.seconds, 6)) s (\(formatted(perWindow, 1)) µs per window after the first)"
                )
                return
            }
            // Between batches, with no read queued: the counters a refresh adds start with the next read.
            let now = Duration(wholeNanoseconds: elapsed)
            if now - lastRefresh >= refreshInterval {
                lastRefresh = now
                meter.refresh()
            }
        }
    }

    /// Closes windows one after another from the meter's applied reads: the one window value whose arrays
    /// are refilled in place, and what carries from one window to the next.
    private struct WindowCloser {
        let meter: EnergyMeter
        var window: EnergyWindow
        var previousTotals: [UInt64]
        var windowStart = Duration.zero
        var steps: WallClockSteps
        var windows = 0
        /// The thread's CPU time once its first window is closed: the figure logged at the end leaves out
        /// the start (first touches of the code, the writer's series set-up), as the benchmark does.
        var cpuAfterFirstWindow = Duration.zero

        init(meter: EnergyMeter, startWall: Int64) {
            self.meter = meter
            previousTotals = meter.totals
            steps = WallClockSteps(wall: startWall)
            window = EnergyWindow(
                startMicroseconds: startWall, endMicroseconds: startWall, duration: .zero, domains: meter.domains,
                energy: [], stuck: [], readErrors: meter.readErrors, glitches: meter.glitches, lateWindows: 0, missedWindows: 0,
                clockSteps: 0, clockStepMicroseconds: 0
            )
        }

        /// Closes the window that ended at `wake`, whose read the meter has just applied, and hands it over.
        mutating func close(_ wake: Wake, sampler: Sampler) {
            // The meter's arrays once per window (one retain each, not a getter call per domain).
            let domains = meter.domains
            let totals = meter.totals
            let statuses = meter.statuses
            if domains != window.domains {
                // A domain found by refresh() (window.domains are still the last window's): its window starts now.
                previousTotals = domains.carrying(previousTotals, from: window.domains, fill: 0)
            }
            window.energy.removeAll(keepingCapacity: true)
            window.stuck.removeAll(keepingCapacity: true)
            for i in domains.indices {
                switch statuses[i] {
                case .failed, .glitch:
                    window.energy.append(nil)
                    window.stuck.append(false)
                case .ok, .stuck:
                    window.energy.append(totals[i] &- previousTotals[i])
                    previousTotals[i] = totals[i]
                    window.stuck.append(statuses[i].isStuck)
                }
            }
            window.startMicroseconds = window.endMicroseconds
            window.endMicroseconds = wake.wall
            let elapsed = Duration(wholeNanoseconds: wake.elapsed)
            window.duration = elapsed - windowStart
            window.domains = domains
            window.readErrors = meter.readErrors
            window.glitches = meter.glitches
            window.lateWindows = wake.late
            window.missedWindows = wake.missed
            window.clockStepMicroseconds = steps.observe(wall: wake.wall, monotonic: elapsed)
            window.clockSteps = steps.count
            if sampler.recordsCounters { sampler.recordCounters(meter, into: &window, boot: wake.boot) }
            if window.clockStepMicroseconds != 0 {
                let step = window.clockStepMicroseconds
                sampler.logger.warning(
                    "the wall clock stepped \(step > 0 ? "forward" : "back") by \(Double(abs(step)) / 1e6) s against the monotonic clock (NTP, an operator, a resumed VM): windows stay exact; \(step > 0 ? "timestamps follow the new time" : "samples are held back until the new time passes the last one sent (see docs/reliability.md)")"
                )
            }
            sampler.sink.accept(window)
            windows += 1
            if windows == 1 { cpuAfterFirstWindow = ThreadCPUTime.current() }
            windowStart = elapsed
        }
    }
}
