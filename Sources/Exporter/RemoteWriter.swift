import Logging
import RAPLBackend
import ServiceLifecycle
import Synchronization

/// Batches windows into remote-write requests and delivers them in order, with retry.
///
/// - Every `pushInterval` the pending samples become a batch (split when larger than
///   `maxSamplesPerRequest`), with the self-metrics appended.
/// - Batches go out strictly in order, one at a time, so a series never goes backwards.
/// - Network errors, 5xx and 429 are retried with exponential backoff and jitter, honouring
///   `Retry-After`; other 4xx are dropped, counted and logged with the response body.
/// - At most `maxQueuedBatches` batches wait; beyond that the oldest is dropped and counted.
/// - Samples older than `maxSampleAge` are dropped rather than retried forever.
/// - On graceful shutdown, what is pending is pushed within `shutdownTimeout`; what cannot be is
///   counted as dropped and logged.
///
/// Generic over `Clock` (push ticks, backoff) so tests drive it with a manual clock.
public actor RemoteWriter<C: Clock>: WindowSink, Service where C.Duration == Duration {
    public enum DropReason: String, Sendable, CaseIterable {
        /// The receiver answered a 4xx other than 429: retrying cannot help.
        case rejected
        /// More than `maxQueuedBatches` batches were waiting.
        case queueFull = "queue_full"
        /// Older than `maxSampleAge`.
        case tooOld = "too_old"
        /// Still pending when the shutdown deadline passed.
        case shutdown
    }

    public struct Statistics: Sendable, Equatable {
        /// Samples (energy and self-metrics) the receiver accepted.
        public var sent: UInt64 = 0
        /// Samples in requests that failed with a retryable error (each failed attempt counts).
        public var failed: UInt64 = 0
        /// Samples sent again after a failure.
        public var retried: UInt64 = 0
        public var dropped: [DropReason: UInt64] = Dictionary(uniqueKeysWithValues: DropReason.allCases.map { ($0, 0) })
        /// Requests by outcome.
        public var requests: UInt64 = 0
        public var lastPushDuration: Duration = .zero

        public var totalDropped: UInt64 { dropped.values.reduce(0, +) }
    }

    /// One push's samples. Sent in requests of at most `maxSamplesPerRequest`; `delivered` counts the
    /// samples already accepted (or rejected), so a retry re-sends only the request that failed.
    struct Batch {
        var samples: [PendingSample]
        var delivered = 0
        var attempts = 0
        var retryAt: C.Instant?

        var remaining: Int { samples.count - delivered }
    }

    private struct DomainSeries {
        var energy: Int
        var cumulative: Int?
        var readErrors: Int
        var stuck: Int
    }

    /// What the sampling thread hands over, behind a lock: `accept` appends a window's samples here
    /// (no actor hop, no allocation once the arrays have grown), and each push interval `cutBatch`
    /// takes them. The series table lives here too, since new domains add series from `accept`.
    private struct Intake: ~Copyable {
        var table = SeriesTable()
        var byDomain: [Domain: DomainSeries] = [:]
        /// The series of the last window's domains, in its order, and their cumulative totals (µJ).
        var domains: [Domain] = []
        var series: [DomainSeries] = []
        var totals: [UInt64] = []
        var pending: [PendingSample] = []
        var lastTimestamp: Int64 = .min
        /// The last window's figures, for the self-metrics.
        var windows = 0
        var lateWindows: UInt64 = 0
        var missedWindows: UInt64 = 0
        var readErrors: [UInt64] = []
        var stuck: [Bool] = []

        /// A strictly increasing ms timestamp: two windows closing within one millisecond (1 kHz
        /// sampling) must not produce two samples with one timestamp, which receivers reject.
        mutating func timestamp(_ microseconds: Int64) -> Int64 {
            let ms = microseconds / 1000
            lastTimestamp = ms > lastTimestamp ? ms : lastTimestamp + 1
            return lastTimestamp
        }

        mutating func series(for domain: Domain, _ labels: SeriesLabels) -> DomainSeries {
            if let s = byDomain[domain] { return s }
            let pairs = SeriesTable.domainLabels(domain, labels)
            let s = DomainSeries(
                energy: table.series(labels.metricName, pairs),
                cumulative: labels.cumulative ? table.series(SeriesLabels.cumulativeMetricName, pairs) : nil,
                readErrors: table.series("rapl_exporter_read_errors_total", pairs),
                stuck: table.series("rapl_exporter_domain_stuck", pairs)
            )
            byDomain[domain] = s
            return s
        }

        mutating func add(_ window: borrowing EnergyWindow, _ labels: SeriesLabels) {
            if window.domains != domains {
                // First window, or refresh() found a domain: look the series up again, keeping totals.
                totals = window.domains.carrying(totals, from: domains, fill: 0)
                domains = window.domains
                series.removeAll()
                for domain in window.domains { series.append(series(for: domain, labels)) }
            }
            let ts = timestamp(window.endMicroseconds)
            for i in domains.indices {
                guard let energy = window.energy[i] else { continue }
                pending.append(PendingSample(series: series[i].energy, value: Double(energy), timestamp: ts))
                if let cumulative = series[i].cumulative {
                    totals[i] &+= energy
                    pending.append(PendingSample(series: cumulative, value: Double(totals[i]) / 1e6, timestamp: ts))
                }
            }
            windows += 1
            lateWindows = window.lateWindows
            missedWindows = window.missedWindows
            readErrors.removeAll(keepingCapacity: true)
            readErrors.append(contentsOf: window.readErrors)
            stuck.removeAll(keepingCapacity: true)
            stuck.append(contentsOf: window.stuck)
        }
    }

    private let settings: RemoteWriteSettings
    private let transport: any RemoteWriteTransport
    private let clock: C
    private let wallClock: any WallClock
    private let random: @Sendable () -> Double
    private let health: HealthFile?
    private let logger: Logger

    private let intake = Mutex(Intake())
    /// The table as of the last cut batch: every series a queued sample refers to is in it.
    private var table = SeriesTable()
    private var encoder = RemoteWriteEncoder()
    private var batches: [Batch] = []
    private var selfSeries: [String: Int] = [:]
    public private(set) var statistics = Statistics()

    public init(
        settings: RemoteWriteSettings,
        transport: any RemoteWriteTransport,
        clock: C,
        wallClock: any WallClock = SystemWallClock(),
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        health: HealthFile? = nil,
        logger: Logger = Logger(label: "rapl-exporter.remote-write")
    ) {
        self.health = health
        self.settings = settings
        self.transport = transport
        self.clock = clock
        self.wallClock = wallClock
        self.random = random
        self.logger = logger
    }

    /// Samples not yet delivered: pending plus queued batches.
    public var pendingSamples: Int { intake.withLock { $0.pending.count } + queuedSamples }
    private var queuedSamples: Int { batches.reduce(0) { $0 + $1.remaining } }
    public var queuedBatches: Int { batches.count }

    /// Called on the sampling thread: appends the window's samples under the intake lock.
    public nonisolated func accept(_ window: borrowing EnergyWindow) {
        intake.withLock { $0.add(window, settings.labels) }
    }

    /// Appends the self-metrics, stamped now.
    private func appendSelfMetrics(to samples: inout [PendingSample], _ intake: inout Intake, pendingBefore: Int) {
        let ts = intake.timestamp(wallClock.nowMicroseconds())
        let labels = [("source", settings.labels.source)] + settings.labels.extra
        func add(_ name: String, _ value: Double, _ extra: [(String, String)] = []) {
            let key = name + extra.map { "|\($0.0)=\($0.1)" }.joined()
            let series: Int
            if let i = selfSeries[key] {
                series = i
            } else {
                series = intake.table.series(name, extra + labels)
                selfSeries[key] = series
            }
            samples.append(PendingSample(series: series, value: value, timestamp: ts))
        }
        let stats = statistics
        add("rapl_exporter_samples_sent_total", Double(stats.sent))
        add("rapl_exporter_samples_failed_total", Double(stats.failed))
        add("rapl_exporter_samples_retried_total", Double(stats.retried))
        for reason in DropReason.allCases {
            add("rapl_exporter_samples_dropped_total", Double(stats.dropped[reason] ?? 0), [("reason", reason.rawValue)])
        }
        add("rapl_exporter_samples_pending", Double(pendingBefore))
        add("rapl_exporter_push_duration_seconds", stats.lastPushDuration.seconds)
        if intake.windows > 0 {
            add("rapl_exporter_windows_late_total", Double(intake.lateWindows))
            add("rapl_exporter_windows_missed_total", Double(intake.missedWindows))
            for i in intake.domains.indices {
                let s = intake.series[i]
                samples.append(PendingSample(series: s.readErrors, value: Double(intake.readErrors[i]), timestamp: ts))
                samples.append(PendingSample(series: s.stuck, value: intake.stuck[i] ? 1 : 0, timestamp: ts))
            }
        }
    }

    /// Turns what is pending into a batch (with the self-metrics) and enforces the queue bound.
    func cutBatch() {
        let queued = queuedSamples
        let samples = intake.withLock { intake -> [PendingSample] in
            var samples = intake.pending
            intake.pending.removeAll(keepingCapacity: true)
            appendSelfMetrics(to: &samples, &intake, pendingBefore: samples.count + queued)
            table = intake.table
            return samples
        }
        batches.append(Batch(samples: samples))
        while batches.count > settings.maxQueuedBatches {
            let dropped = batches.removeFirst()
            statistics.dropped[.queueFull, default: 0] += UInt64(dropped.remaining)
            logger.error(
                "queue full (\(settings.maxQueuedBatches) batches, MAX_RETRY_BATCHES): dropped the oldest batch of \(dropped.remaining) samples; total dropped \(statistics.totalDropped)"
            )
        }
    }

    public func run() async throws {
        // As in the sampler: one wait for graceful shutdown, which cancels the push loop, then the flush.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.pushLoop() }
            do { try await gracefulShutdown() } catch {}
            group.cancelAll()
        }
        await flush()
    }

    /// Cuts a batch every push interval and sends what is due, until cancelled.
    private func pushLoop() async {
        var nextPush = clock.now.advanced(by: settings.pushInterval)
        while !Task.isCancelled {
            var wake = nextPush
            if let retryAt = batches.first?.retryAt, retryAt < wake { wake = retryAt }
            do {
                try await clock.sleep(until: wake, tolerance: nil)
            } catch {
                return
            }
            let now = clock.now
            if now >= nextPush {
                cutBatch()
                while nextPush <= now { nextPush = nextPush.advanced(by: settings.pushInterval) }
            }
            await drain(until: nil)
        }
    }

    /// Shutdown: push everything within `shutdownTimeout`; count and log what is left.
    public func flush() async {
        cutBatch()
        await drain(until: clock.now.advanced(by: settings.shutdownTimeout))
        let left = batches.reduce(0) { $0 + $1.remaining }
        if left > 0 {
            statistics.dropped[.shutdown, default: 0] += UInt64(left)
            batches.removeAll()
            logger.error("shutdown: \(left) samples could not be delivered within \(settings.shutdownTimeout) and are dropped")
        } else {
            logger.info("shutdown: everything delivered (\(statistics.sent) samples sent, \(statistics.totalDropped) dropped in all)")
        }
    }

    /// Sends queued batches in order, each in requests of at most `maxSamplesPerRequest`. Without a
    /// deadline it returns when the head batch must wait for a retry; with one (shutdown) it waits for
    /// retries that fall before the deadline.
    func drain(until deadline: C.Instant?) async {
        while !batches.isEmpty {
            let now = clock.now
            if let deadline, now >= deadline { return }
            if let retryAt = batches[0].retryAt, retryAt > now {
                guard let deadline, retryAt < deadline else { return }
                try? await clock.sleep(until: retryAt, tolerance: nil)
                continue
            }
            dropTooOld()
            if batches[0].remaining == 0 {
                batches.removeFirst()
                continue
            }
            var timeout = settings.requestTimeout
            if let deadline { timeout = min(timeout, now.duration(to: deadline)) }
            let from = batches[0].delivered
            let to = min(from + settings.maxSamplesPerRequest, batches[0].samples.count)
            let count = UInt64(to - from)
            let attempts = batches[0].attempts
            if attempts > 0 { statistics.retried += count }
            let body = encoder.encode(batches[0].samples[from..<to], table: table)
            let start = clock.now
            let result = await transport.send(body, timeout: timeout)
            statistics.lastPushDuration = start.duration(to: clock.now)
            statistics.requests += 1
            let decision = PushDecision.decide(result, nowSeconds: wallClock.nowMicroseconds() / 1_000_000)
            health?.pushed(ok: decision == .delivered)
            switch decision {
            case .delivered:
                statistics.sent += count
                finishRequest(upTo: to)
                if attempts > 0 { logger.notice("delivered \(count) samples after \(attempts) failed attempts") }
            case .retry(let retryAfter, let reason):
                statistics.failed += count
                batches[0].attempts += 1
                let delay = settings.retry.delay(attempt: batches[0].attempts, retryAfter: retryAfter, random: random())
                batches[0].retryAt = clock.now.advanced(by: delay)
                logger.warning(
                    "push of \(count) samples to \(settings.endpoint) failed (\(reason)); retry \(batches[0].attempts) in \(delay)\(retryAfter != nil ? " (Retry-After)" : ""); \(batches.count) batches waiting"
                )
            case .reject(let reason):
                statistics.dropped[.rejected, default: 0] += count
                finishRequest(upTo: to)
                logger.error("receiver rejected \(count) samples, dropped (not retried): \(reason)")
            }
        }
    }

    /// The head batch's request ending at `to` is done (accepted or rejected).
    private func finishRequest(upTo to: Int) {
        batches[0].delivered = to
        batches[0].attempts = 0
        batches[0].retryAt = nil
        if batches[0].remaining == 0 { batches.removeFirst() }
    }

    /// Drops the head batch's undelivered samples that are older than `maxSampleAge`.
    private func dropTooOld() {
        let cutoff = wallClock.nowMicroseconds() / 1000 - Int64(settings.maxSampleAge.seconds * 1000)
        let from = batches[0].delivered
        let before = batches[0].samples.count
        var kept = Array(batches[0].samples[..<from])
        kept.append(contentsOf: batches[0].samples[from...].lazy.filter { $0.timestamp >= cutoff })
        let old = before - kept.count
        guard old > 0 else { return }
        batches[0].samples = kept
        statistics.dropped[.tooOld, default: 0] += UInt64(old)
        logger.error("dropped \(old) samples older than \(settings.maxSampleAge) (max sample age) instead of retrying them")
    }
}
