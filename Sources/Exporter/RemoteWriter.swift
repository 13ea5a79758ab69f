import Logging
import RAPLBackend
import ServiceLifecycle
import Support
import Synchronization

/// Batches windows into remote-write requests and delivers them in order, with retry.
///
/// - Every `pushInterval` the pending samples become a batch (split when larger than
///   `maxSamplesPerRequest`), with the self-metrics appended.
/// - Batches go out strictly in order, one at a time, so a series never goes backwards.
/// - Network errors, 5xx and 429 are retried with exponential backoff and jitter, honouring
///   `Retry-After`. The backoff grows with consecutive failures up to its maximum and stays there
///   until a request succeeds (a dropped batch does not reset it).
/// - 413 (too large) splits the request in halves and retries them; another 4xx drops the request's
///   samples, counted and logged with the (redacted) response body. A rejected request that carried
///   energy and self-metrics together is retried as two, so the counters that show the rejection
///   still reach the receiver.
/// - At most `maxQueuedBatches` batches wait. When one more is cut, the head is tried at once,
///   whatever its backoff, and only if that fails is the oldest batch dropped and counted: an outage
///   shorter than `maxQueuedBatches × pushInterval` loses nothing.
/// - Samples older than `maxSampleAge` are dropped rather than retried forever.
/// - On graceful shutdown the request in flight is cancelled and everything pending gets at least one
///   attempt, all within `shutdownTimeout` of the signal; what cannot be delivered is counted as
///   dropped and logged. ``abandon()`` (a second signal) counts what is left at once.
///
/// Pushes follow the sampler's batches when it hands windows over once per push interval
/// (`pushesFollowBatches`): the sampling thread rings after each batch and the push starts then, with
/// the push interval's timer standing in, half an interval late, only when no batch comes. Otherwise a
/// batch is cut every push interval on the writer's own timer.
///
/// Generic over its clock (push ticks, backoff) so tests drive it with a manual clock.
public actor RemoteWriter<C: DoorbellClock>: WindowSink, PowerLimitsSink, Service where C.Duration == Duration {
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
        /// Requests sent (every attempt, whatever its outcome).
        public var requests: UInt64 = 0
        /// Requests split in halves after a 413.
        public var splits: UInt64 = 0
        public var lastPushDuration: Duration = .zero

        public var totalDropped: UInt64 { dropped.values.reduce(0, +) }
    }

    /// One push's samples. Sent in requests of at most `maxSamplesPerRequest`; `delivered` counts the
    /// samples already accepted (or rejected), so a retry re-sends only the request that failed.
    struct Batch {
        var samples: [PendingSample]
        /// Where the self-metrics begin: a request never needs to mix them with energy after a rejection.
        var selfMetricsStart: Int
        var delivered = 0
        var attempts = 0
        var retryAt: C.Instant?
        /// The request size for this batch: halved after each 413.
        var requestLimit: Int
        /// After a rejected mixed request: send energy and self-metrics apart.
        var separateSelfMetrics = false
        /// With a spool: the sequence number of each window in `samples`, and where its samples end.
        var windowSeqs: [UInt64] = []
        var windowEnds: [Int] = []
        /// Its windows are durable in the spool: dropping it from memory loses nothing.
        var spooled = false
        /// Read back from the spool (a restart's or an outage's backlog); carries no self-metrics.
        var replay = false
        /// Requests halved after a 400 to a replay: back to full size after the next delivered one.
        var halvedAfterRefusal = false

        /// The last window whose samples all lie before `end`.
        func lastWindowSeq(before end: Int) -> UInt64? {
            let k = windowEnds.prefix { $0 <= end }.count
            return k > 0 ? windowSeqs[k - 1] : nil
        }

        var remaining: Int { samples.count - delivered }

        /// The end of the next request starting at `delivered`.
        func requestEnd() -> Int {
            var end = min(delivered + requestLimit, samples.count)
            if separateSelfMetrics, delivered < selfMetricsStart { end = min(end, selfMetricsStart) }
            return end
        }
    }

    private let settings: RemoteWriteSettings
    /// The longest step back of the wall clock (ms) that windows are held back for: the sample age cap.
    private let holdLimit: Int64
    private let transport: any RemoteWriteTransport
    private let clock: C
    private let wallClock: any WallClock
    private let random: @Sendable () -> Double
    private let health: HealthFile?
    private let logger: Logger
    /// Where the writer's own unstructured task (the shutdown flush) runs: the event loop the daemon's
    /// async work prefers; nil, Swift concurrency's default.
    private let executor: (any TaskExecutor)?
    /// Where /metrics reads the writer's counters, when it is served.
    private let scrape: ScrapeState?

    private let intake: Mutex<WriterIntake>
    /// The disk spool, when `--spool-dir` is set.
    private let spool: Spool?
    /// The oldest window still held in memory (pending or in a batch): what lies between the spool's
    /// acknowledged position and this is read back from disk before anything else is sent.
    private var memoryFrom: UInt64 = 1
    /// Logged once per outage: batches left to the spool.
    private var spoolAsideLogged = false
    /// While a backlog is being sent: when it started and how many windows so far (for one notice at its end).
    private var backlogStarted: C.Instant?
    private var backlogWindows = 0
    /// A run of batches with samples older than `maxSampleAge`: logged once, summed at its end.
    private var tooOldLogged = false
    private var tooOldInEpisode: UInt64 = 0
    /// The table as of the last cut batch: every series a queued sample refers to is in it.
    private var table = SeriesTable()
    private var encoder = RemoteWriteEncoder()
    /// Output otlp: its encoder (the request's resource and the sums' start time).
    private let otlpEncoder: OTLPEncoder?
    /// A partial success logged, until a request is taken whole again.
    private var partialLogged = false
    private var batches: [Batch] = []
    private var selfSeries: SelfSeries?
    public private(set) var statistics = Statistics()
    /// Failed attempts since the last delivered request: the backoff's exponent.
    private var consecutiveFailures = 0
    /// Set by ``abandon()``: nothing more is sent.
    private var abandoned = false
    /// Set at graceful shutdown: the push loop ends after the request in flight, if any.
    private var stopping = false
    /// Rung by the sampling thread after each batch (when pushes follow batches) and at shutdown.
    private let doorbell = Doorbell()
    private let pushesFollowBatches: Bool
    /// The protocol of the next request (see ``RemoteWriteProtocol``).
    public private(set) var wire: RemoteWriteWire
    /// `auto`: a 2.0 request was accepted with the Written headers, so the receiver speaks 2.0 and a
    /// later 400 is about the samples, not the protocol.
    private var v2Confirmed = false
    /// `auto`, after falling back to 1.0: when 2.0 is tried again.
    private var v2RetryAt: C.Instant?

    public init(
        settings: RemoteWriteSettings,
        transport: any RemoteWriteTransport,
        clock: C,
        wallClock: any WallClock = SystemWallClock(),
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        health: HealthFile? = nil,
        executor: (any TaskExecutor)? = nil,
        scrape: ScrapeState? = nil,
        spool: sending Spool? = nil,
        source: (bootID: String, backend: String) = ("", ""),
        pushesFollowBatches: Bool = false,
        logger: Logger = Logger(label: "rapl-exporter.remote-write")
    ) {
        self.pushesFollowBatches = pushesFollowBatches
        var intake = WriterIntake()
        intake.backend = source.backend
        if let spool {
            intake.spooling = true
            intake.nextSeq = spool.nextSeq
            intake.bootID = source.bootID
            if let anchor = spool.anchor {
                intake.windowStamps.last = anchor.window.timestampMilliseconds
                intake.selfStamps.last = anchor.window.timestampMilliseconds
            }
            memoryFrom = spool.nextSeq
        }
        self.intake = Mutex(intake)
        self.spool = spool
        self.health = health
        self.executor = executor
        self.scrape = scrape
        self.settings = settings
        self.wire = settings.otlp.map { $0.gzip ? .otlpGzip : .otlp } ?? (settings.wireProtocol == .v1 ? .v1 : .v2)
        self.otlpEncoder = settings.otlp.map {
            OTLPEncoder(
                resource: $0.resource, scopeVersion: ExporterVersion.current, startNanoseconds: UInt64(max(0, wallClock.nowMicroseconds())) * 1000)
        }
        self.holdLimit = Int64(settings.maxSampleAge.seconds * 1000)
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
        intake.withLock { $0.add(window, settings.series, holdLimit: holdLimit) }
    }

    /// Called on the sampling thread after each batch of windows: when pushes follow batches, the push
    /// loop wakes and pushes now.
    public nonisolated func batchHandedOver() {
        if pushesFollowBatches { doorbell.ring() }
    }

    /// Called by `PowerLimitsService` (on the event loop, every `--power-limits-interval`): the read's
    /// series are looked up now, so that the next cut only appends its values.
    public nonisolated func accept(limits snapshot: PowerLimitSnapshot) {
        let series = settings.series
        intake.withLock { intake in
            intake.limitSamples = snapshot.samples.map { s in
                (intake.table.series(s.name, SeriesTable.domainLabels(s.domain, series) + s.extra), s.value)
            }
        }
    }

    /// The writer's own self-metric series, looked up in the table once (the first batch): cutting a
    /// batch then builds no label strings under the intake lock the sampling thread needs.
    private struct SelfSeries {
        var sent, failed, retried, pending, pushDuration, late, missed, clockSteps: Int
        /// By `DropReason.allCases`.
        var dropped: [Int]
        /// With a spool.
        var spool: [Int] = []
        /// `rapl_exporter_build_info{version, backend}`, when the backend is known: a simulated source is
        /// visible in the data.
        var buildInfo: Int?

        init(_ table: inout SeriesTable, labels: [(String, String)], spooling: Bool, backend: String) {
            func series(_ name: String, _ extra: [(String, String)] = []) -> Int { table.series(name, extra + labels) }
            sent = series("rapl_exporter_samples_sent_total")
            failed = series("rapl_exporter_samples_failed_total")
            retried = series("rapl_exporter_samples_retried_total")
            dropped = DropReason.allCases.map { series("rapl_exporter_samples_dropped_total", [("reason", $0.rawValue)]) }
            pending = series("rapl_exporter_samples_pending")
            pushDuration = series("rapl_exporter_push_duration_seconds")
            late = series("rapl_exporter_windows_late_total")
            missed = series("rapl_exporter_windows_missed_total")
            clockSteps = series("rapl_exporter_clock_steps_total")
            if spooling { spool = SpoolFigures.names.map { series($0) } }
            if !backend.isEmpty { buildInfo = series("rapl_exporter_build_info", [("version", ExporterVersion.current), ("backend", backend)]) }
        }
    }

    /// Appends the self-metrics, stamped `now` (µs); called under the intake lock.
    private func appendSelfMetrics(
        to samples: inout [PendingSample], _ intake: inout WriterIntake, series s: SelfSeries, pendingBefore: Int, now: Int64,
        spool figures: SpoolFigures?
    ) {
        let ts = intake.selfStamps.next(now)
        let stats = statistics
        func add(_ series: Int, _ value: Double) { samples.append(PendingSample(series: series, value: value, timestamp: ts)) }
        add(s.sent, Double(stats.sent))
        add(s.failed, Double(stats.failed))
        add(s.retried, Double(stats.retried))
        for (reason, series) in zip(DropReason.allCases, s.dropped) { add(series, Double(stats.dropped[reason] ?? 0)) }
        add(s.pending, Double(pendingBefore))
        add(s.pushDuration, stats.lastPushDuration.seconds)
        if let info = s.buildInfo { add(info, 1) }
        if let figures {
            for (series, value) in zip(s.spool, figures.values(restartGaps: intake.restartGaps)) { add(series, value) }
        }
        for (series, value) in intake.limitSamples { add(series, value) }
        if intake.windows > 0 {
            add(s.late, Double(intake.lateWindows))
            add(s.missed, Double(intake.missedWindows))
            add(s.clockSteps, Double(intake.clockSteps))
            for i in intake.domains.indices {
                let d = intake.series[i]
                add(d.readErrors, Double(intake.readErrors[i]))
                add(d.glitches, Double(intake.glitches[i]))
                add(d.stuck, intake.stuck[i] ? 1 : 0)
            }
        }
    }

    /// Turns what is pending into a batch (with the self-metrics). When that makes one batch more than
    /// the queue holds, the head is tried at once, backoff or not, and the oldest is dropped only if
    /// the receiver still cannot take it.
    func cutBatch() async {
        let queued = queuedSamples
        let now = wallClock.nowMicroseconds()
        let labels = [("source", settings.series.source)] + settings.series.extra
        let figures = spool.map { SpoolFigures($0.statistics) }
        let spooling = spool != nil
        let (samples, selfStart, records, seqs, ends) = intake.withLock {
            intake -> ([PendingSample], Int, [UInt8], [UInt64], [Int]) in
            var samples = intake.pending
            intake.pending.removeAll(keepingCapacity: true)
            let selfStart = samples.count
            let series = selfSeries ?? SelfSeries(&intake.table, labels: labels, spooling: spooling, backend: intake.backend)
            selfSeries = series
            appendSelfMetrics(to: &samples, &intake, series: series, pendingBefore: samples.count + queued, now: now, spool: figures)
            table = intake.table
            let (records, seqs, ends) = intake.takeRecords()
            return (samples, selfStart, records, seqs, ends)
        }
        var batch = Batch(samples: samples, selfMetricsStart: selfStart, requestLimit: settings.maxSamplesPerRequest)
        if let spool, let first = seqs.first, let last = seqs.last {
            // Durable before any of it is sent: a crash after a receiver stored it cannot make it forgotten.
            batch.spooled = spool.append(records, firstSeq: first, lastSeq: last, windows: seqs.count)
            batch.windowSeqs = seqs
            batch.windowEnds = ends
        }
        batches.append(batch)
        defer { publish() }
        guard memoryBatches > settings.maxQueuedBatches, !abandoned else { return }
        if let retryAt = batches[0].retryAt, retryAt > clock.now {
            batches[0].retryAt = nil
            await drain(until: nil)
        }
        while memoryBatches > settings.maxQueuedBatches, let i = batches.firstIndex(where: { !$0.replay }) {
            let dropped = batches.remove(at: i)
            // The backoff belongs to the receiver, not to the batch: the new head waits it out too.
            if i < batches.count, batches[i].retryAt == nil { batches[i].retryAt = dropped.retryAt }
            if let last = dropped.windowSeqs.last { memoryFrom = max(memoryFrom, last + 1) }
            if dropped.spooled {
                // On disk: read back and sent, in order, once the receiver takes requests again.
                if !spoolAsideLogged {
                    spoolAsideLogged = true
                    logger.warning(
                        "queue full (\(settings.maxQueuedBatches) batches, MAX_RETRY_BATCHES) and the receiver still fails: the oldest batches wait in the spool (\(spool?.settings.directory ?? "")) and are sent from it when the receiver is back; logged once per outage"
                    )
                }
                continue
            }
            statistics.dropped[.queueFull, default: 0] += UInt64(dropped.remaining)
            logger.error(
                "queue full (\(settings.maxQueuedBatches) batches, MAX_RETRY_BATCHES) and the receiver still fails: dropped the oldest batch of \(dropped.remaining) samples; total dropped \(statistics.totalDropped)"
            )
        }
    }

    /// Batches cut from memory (not read back from the spool).
    private var memoryBatches: Int { batches.reduce(0) { $0 + ($1.replay ? 0 : 1) } }

    /// Puts the next part of the spool's backlog — windows after the acknowledged position and before
    /// the oldest still in memory — at the head of the queue, as one batch of at most
    /// `maxSamplesPerRequest` windows (sent in requests of at most as many samples).
    private func loadBacklog() {
        guard let spool, batches.first?.replay != true else { return }
        guard spool.acked &+ 1 < memoryFrom else {
            if let started = backlogStarted {
                backlogStarted = nil
                spoolAsideLogged = false
                logger.notice("the spool's backlog is delivered: \(backlogWindows) windows in \(started.duration(to: clock.now))")
                backlogWindows = 0
            }
            return
        }
        let windows = spool.backlog(after: spool.acked, before: memoryFrom, maxWindows: settings.maxSamplesPerRequest)
        guard !windows.isEmpty else {
            // Nothing on disk there (windows whose spooling failed, already counted when dropped).
            spool.acknowledge(upTo: memoryFrom - 1)
            return
        }
        let series = settings.series
        let (samples, seqs, ends) = intake.withLock { intake in
            let replayed = intake.samples(replaying: windows, series)
            table = intake.table
            return replayed
        }
        var batch = Batch(samples: samples, selfMetricsStart: samples.count, requestLimit: settings.maxSamplesPerRequest)
        batch.windowSeqs = seqs
        batch.windowEnds = ends
        batch.spooled = true
        batch.replay = true
        batch.retryAt = batches.first?.retryAt
        batches.insert(batch, at: 0)
        if backlogStarted == nil { backlogStarted = clock.now }
        backlogWindows += windows.count
        logger.info("sending \(windows.count) spooled windows (#\(seqs.first ?? 0)–#\(seqs.last ?? 0)) from \(spool.settings.directory)")
    }

    public func run() async throws {
        // As in the sampler: one wait for graceful shutdown, which ends the push loop (a request in
        // flight may finish, within the shutdown timeout: then it is cancelled), then the flush; all of it
        // within the shutdown timeout of the signal.
        var deadline = clock.now
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.pushLoop() }
            do { try await gracefulShutdown() } catch {}
            deadline = clock.now.advanced(by: settings.shutdownTimeout)
            stopping = true
            doorbell.ring()
            group.addTask { [clock, deadline] in try? await clock.sleep(until: deadline, tolerance: nil) }
            // The loop's end or the deadline, whichever comes first; the other is cancelled.
            await group.next()
            group.cancelAll()
        }
        // Not cancelled with this task (a test or an escalating service group cancels it): the flush
        // is bounded by its own deadline.
        await Task(executorPreference: executor) { [deadline] in await self.flush(until: deadline) }.value
        closeSpool()
    }

    /// Closes the spool (its files and its lock), so that the directory is free for the next process
    /// at once. After it, nothing more is spooled.
    public func closeSpool() { spool?.close() }

    /// Cuts a batch every push interval (or when the sampler rings after a batch, see the type's comment)
    /// and sends what is due, until shutdown or cancellation.
    ///
    /// Specialized for the daemon's clock: the actor is generic over its clock (tests inject one) and is
    /// instantiated in the executable, so its code ran unspecialized, looking up generic metadata
    /// (`Optional<C.Instant>`, `Batch`, zip iterators) about 100 times per push. With the specialized
    /// copy (the generic entry checks the type and calls it; what it calls is specialized with it) a
    /// push runs 241 000 instructions instead of 287 000 (callgrind, 10 Hz, 4 domains, push 4 s).
    @_specialize(where C == EventLoopClock)
    private func pushLoop() async {
        // Following batches, the timer is late by half a push interval: a batch's ring comes first.
        let grace = pushesFollowBatches ? settings.pushInterval / 2 : .zero
        var nextPush = clock.now.advanced(by: settings.pushInterval)
        // What a previous run left in the spool goes out now, not at the first push.
        if let spool, spool.acked &+ 1 < memoryFrom { await drain(until: nil) }
        while !stopping, !Task.isCancelled {
            var wake = nextPush.advanced(by: grace)
            if let retryAt = batches.first?.retryAt, retryAt < wake { wake = retryAt }
            let rang: Bool
            do {
                rang = try await clock.sleep(until: wake, orUntilRung: doorbell)
            } catch {
                return
            }
            if stopping { return }
            let now = clock.now
            if rang && pushesFollowBatches {
                await cutBatch()
                nextPush = now.advanced(by: settings.pushInterval)
            } else if now >= nextPush.advanced(by: grace) {
                await cutBatch()
                while nextPush.advanced(by: grace) <= now { nextPush = nextPush.advanced(by: settings.pushInterval) }
            }
            await drain(until: nil)
        }
    }

    /// Shutdown: everything pending gets an attempt now (a long `Retry-After` or backoff is not waited
    /// out first), then retries while they fit in `shutdownTimeout`; what is left is counted and logged.
    public func flush(until deadline: C.Instant? = nil) async {
        let deadline = deadline ?? clock.now.advanced(by: settings.shutdownTimeout)
        guard !abandoned else { return }
        await cutBatch()
        if !batches.isEmpty { batches[0].retryAt = nil }
        await drain(until: deadline)
        guard !abandoned else { return }
        let left = batches.reduce(0) { $0 + ($1.spooled ? 0 : $1.remaining) }
        let kept = batches.reduce(0) { $0 + ($1.spooled ? $1.windowSeqs.count : 0) }
        let backlog = spool.map { $0.acked &+ 1 < memoryFrom } ?? false
        batches.removeAll()
        if kept > 0 || backlog, let spool {
            logger.notice(
                "shutdown: undelivered windows stay in the spool \(spool.settings.directory) and are sent first at the next start (after #\(spool.acked))"
            )
        }
        if left > 0 {
            statistics.dropped[.shutdown, default: 0] += UInt64(left)
            logger.error("shutdown: \(left) samples could not be delivered within \(settings.shutdownTimeout) and are dropped; \(summary())")
        } else if kept > 0 || backlog {
            logger.info("shutdown: \(summary())")
        } else if statistics.totalDropped > 0 {
            logger.warning("shutdown: the samples pending at shutdown were delivered, but samples were dropped during the run; \(summary())")
        } else {
            logger.info("shutdown: everything delivered; \(summary())")
        }
    }

    /// A second signal: stop sending, count everything not delivered as dropped, and log it once.
    public func abandon() {
        guard !abandoned else { return }
        abandoned = true
        // What the spool holds is not lost: the next start sends it.
        let left = intake.withLock { $0.pending.count } + batches.reduce(0) { $0 + ($1.spooled ? 0 : $1.remaining) }
        batches.removeAll()
        statistics.dropped[.shutdown, default: 0] += UInt64(left)
        logger.error("second signal: stopping now; \(left) samples not delivered are dropped; \(summary())")
    }

    private func summary() -> String {
        let reasons = DropReason.allCases.compactMap { r in statistics.dropped[r].flatMap { $0 > 0 ? "\(r.rawValue) \($0)" : nil } }
        return "\(statistics.sent) samples sent, \(statistics.totalDropped) dropped in all"
            + (reasons.isEmpty ? "" : " (\(reasons.joined(separator: ", ")))")
    }

    /// Sends queued batches in order, each in requests of at most `maxSamplesPerRequest`. Without a
    /// deadline it returns when the head batch must wait for a retry; with one (shutdown) it waits for
    /// retries that fall before the deadline.
    func drain(until deadline: C.Instant?) async {
        while !abandoned, !Task.isCancelled, deadline != nil || !stopping {
            loadBacklog()
            guard !batches.isEmpty else { return }
            let now = clock.now
            if let deadline, now >= deadline { return }
            if let retryAt = batches[0].retryAt, retryAt > now {
                guard let deadline, retryAt < deadline else { return }
                do { try await clock.sleep(until: retryAt, tolerance: nil) } catch { return }
                continue
            }
            dropTooOld()
            if batches[0].remaining == 0 {
                finishRequest(upTo: batches[0].samples.count)
                continue
            }
            var timeout = settings.requestTimeout
            if let deadline { timeout = min(timeout, now.duration(to: deadline)) }
            let from = batches[0].delivered
            let to = batches[0].requestEnd()
            let count = UInt64(to - from)
            let attempts = batches[0].attempts
            if wire == .v1, let at = v2RetryAt, now >= at {
                wire = .v2
                v2RetryAt = nil
                logger.info("trying remote write 2.0 again (auto)")
            }
            let sentWire = wire
            let body: [UInt8]
            if let otlpEncoder {
                let request = otlpEncoder.encode(batches[0].samples[from..<to], table: table)
                body = sentWire == .otlpGzip ? Gzip.compress(request) : request
            } else {
                body = encoder.encode(batches[0].samples[from..<to], table: table, wire: sentWire)
            }
            let start = clock.now
            let result = await transport.send(body, wire: sentWire, timeout: timeout)
            // Cut off at the shutdown deadline (the flush sends it again if time is left), or
            // abandoned by a second signal: not a receiver failure. An answer that came is still taken.
            if abandoned { return }
            if case .failure = result, Task.isCancelled { return }
            if attempts > 0 { statistics.retried += count }
            statistics.lastPushDuration = start.duration(to: clock.now)
            statistics.requests += 1
            defer { publish() }
            var written = count
            if sentWire == .v2 {
                switch Self.v2Outcome(result, confirmed: v2Confirmed) {
                case .notSpoken(let why) where settings.wireProtocol == .auto:
                    // Nothing of this request was stored: the same samples go again, as 1.0, at once.
                    wire = .v1
                    v2Confirmed = false
                    v2RetryAt = clock.now.advanced(by: settings.protocolRetryInterval)
                    logger.notice(
                        "receiver does not take remote write 2.0 (\(why)): sending the same \(count) samples as 1.0, and 1.0 from now on; 2.0 is tried again in \(settings.protocolRetryInterval)"
                    )
                    continue
                case .notSpoken(let why):
                    health?.pushed(ok: false)
                    statistics.dropped[.rejected, default: 0] += count
                    finishRequest(upTo: to)
                    logger.error(
                        "receiver does not take remote write 2.0 (\(why)): \(count) samples dropped; use --remote-write-protocol auto or 1.0")
                    continue
                case .written(let samples):
                    v2Confirmed = true
                    if let samples, samples < count {
                        written = samples
                        statistics.dropped[.rejected, default: 0] += count - samples
                        logger.warning(
                            "receiver stored \(samples) of the \(count) samples of a 2.0 request (X-Prometheus-Remote-Write-Samples-Written)")
                    }
                case .other:
                    break
                }
            }
            let nowSeconds = wallClock.nowMicroseconds() / 1_000_000
            let decision =
                otlpEncoder == nil ? PushDecision.decide(result, nowSeconds: nowSeconds) : PushDecision.decideOTLP(result, nowSeconds: nowSeconds)
            if otlpEncoder != nil, decision == .delivered, case .response(_, _, let answer) = result {
                // OTLP's partial success: the collector took the request but not all of its points.
                if let (rejected, message) = OTLPResponse.partialSuccess(answer), rejected > 0 {
                    written = count - min(count, rejected)
                    statistics.dropped[.rejected, default: 0] += min(count, rejected)
                    if !partialLogged {
                        partialLogged = true
                        logger.warning(
                            "OTLP receiver rejected \(rejected) of \(count) data points (partial success\(message.isEmpty ? "" : ": \(message)")); counted as dropped, logged once until a request is taken whole"
                        )
                    }
                } else {
                    partialLogged = false
                }
            }
            health?.pushed(ok: decision == .delivered)
            switch decision {
            case .delivered:
                statistics.sent += written
                if batches[0].halvedAfterRefusal {
                    batches[0].halvedAfterRefusal = false
                    batches[0].requestLimit = settings.maxSamplesPerRequest
                }
                finishRequest(upTo: to)
                if consecutiveFailures > 0 { logger.notice("delivered \(count) samples after \(consecutiveFailures) failed attempts") }
                consecutiveFailures = 0
            case .retry(let retryAfter, let reason):
                statistics.failed += count
                batches[0].attempts += 1
                consecutiveFailures += 1
                let delay = settings.retry.delay(attempt: consecutiveFailures, retryAfter: retryAfter, random: random())
                batches[0].retryAt = clock.now.advanced(by: delay)
                logger.warning(
                    "push of \(count) samples to \(settings.endpoint) failed (\(reason)); retry \(consecutiveFailures) in \(delay)\(retryAfter != nil ? " (Retry-After)" : ""); \(batches.count) batches waiting"
                )
            case .reject(let status, let reason):
                if status == 400, count > 1, batches[0].replay {
                    // Read back from the spool: after a crash between a receiver storing a request and
                    // the position being recorded, some of these samples are stored already, and a
                    // receiver that refuses old samples refuses the request whole. Halves find the rest.
                    batches[0].requestLimit = Int(count + 1) / 2
                    batches[0].halvedAfterRefusal = true
                    statistics.splits += 1
                    logger.warning(
                        "receiver refused \(count) spooled samples (\(reason)); some may be stored already (sent before a restart): sending requests of at most \(batches[0].requestLimit)"
                    )
                    continue
                }
                if status == 413, count > 1 {
                    // Too large for the receiver: the same samples in two requests, at once.
                    batches[0].requestLimit = Int(count + 1) / 2
                    statistics.splits += 1
                    logger.warning(
                        "receiver refused a request of \(count) samples as too large (\(reason)); sending requests of at most \(batches[0].requestLimit)"
                    )
                    continue
                }
                if from < batches[0].selfMetricsStart, to > batches[0].selfMetricsStart, !batches[0].separateSelfMetrics {
                    // Energy and self-metrics together: send them apart, so that the counters that
                    // show this rejection are not rejected with it.
                    batches[0].separateSelfMetrics = true
                    logger.warning("receiver rejected a request of \(count) samples (\(reason)); sending its energy and self-metrics apart")
                    continue
                }
                statistics.dropped[.rejected, default: 0] += count
                finishRequest(upTo: to)
                logger.error("receiver rejected \(count) samples, dropped (not retried): \(reason)")
            }
        }
    }

    /// What a 2.0 request's answer says about the protocol.
    enum V2Outcome: Equatable {
        /// The receiver does not speak 2.0 and stored nothing: a 415; a 2xx without the Written headers
        /// (a 1.x receiver that ignored the content type decodes the 2.0 message as an empty 1.0 one); or,
        /// before any 2.0 request was accepted, a 400 (a receiver that cannot parse the message).
        case notSpoken(String)
        /// Accepted by a 2.0 receiver; the samples it says it wrote, when it says.
        case written(samples: UInt64?)
        /// Anything else (retryable failures, rejections): handled as for 1.0.
        case other
    }

    static func v2Outcome(_ result: TransportResult, confirmed: Bool) -> V2Outcome {
        guard case .response(let status, _, _) = result else { return .other }
        let samples = result.header("X-Prometheus-Remote-Write-Samples-Written")
        let histograms = result.header("X-Prometheus-Remote-Write-Histograms-Written")
        let exemplars = result.header("X-Prometheus-Remote-Write-Exemplars-Written")
        switch status {
        case 200..<300:
            guard samples != nil || histograms != nil || exemplars != nil else {
                return .notSpoken("HTTP \(status) without X-Prometheus-Remote-Write-Samples-Written")
            }
            return .written(samples: samples.flatMap { UInt64($0.trimmingWhitespace()) })
        case 415: return .notSpoken("HTTP 415 Unsupported Media Type")
        case 400 where !confirmed: return .notSpoken("HTTP 400 to the first 2.0 request")
        default: return .other
        }
    }

    /// The counters for /metrics (when it is served).
    private func publish() {
        guard let scrape else { return }
        let s = statistics
        var figures = PushFigures(
            sent: s.sent, failed: s.failed, retried: s.retried,
            dropped: DropReason.allCases.map { .init(reason: $0.rawValue, samples: s.dropped[$0] ?? 0) },
            requests: s.requests, pending: pendingSamples, lastPushSeconds: s.lastPushDuration.seconds)
        if let spool {
            let values = SpoolFigures(spool.statistics).values(restartGaps: intake.withLock { $0.restartGaps })
            figures.spool = Array(zip(SpoolFigures.names, values)).map { (name: $0.0, value: $0.1) }
        }
        scrape.publish(figures)
    }

    /// The head batch's request ending at `to` is done (accepted or rejected).
    private func finishRequest(upTo to: Int) {
        if let spool, let seq = batches[0].lastWindowSeq(before: to) { spool.acknowledge(upTo: seq) }
        batches[0].delivered = to
        batches[0].attempts = 0
        batches[0].retryAt = nil
        if batches[0].remaining == 0 { batches.removeFirst() }
    }

    /// Drops the head batch's undelivered samples that are older than `maxSampleAge`.
    private func dropTooOld() {
        let cutoff = wallClock.nowMicroseconds() / 1000 - Int64(settings.maxSampleAge.seconds * 1000)
        let from = batches[0].delivered
        // The common case, nothing too old, copies nothing.
        guard batches[0].samples[from...].contains(where: { $0.timestamp < cutoff }) else {
            if tooOldLogged {
                tooOldLogged = false
                logger.notice("samples are recent enough again; \(tooOldInEpisode) were dropped as older than \(settings.maxSampleAge)")
                tooOldInEpisode = 0
            }
            return
        }
        let before = batches[0].samples.count
        // How many samples are kept before each index: where the self-metrics and each window now end.
        var keptBefore = [Int](repeating: 0, count: before + 1)
        var kept: [PendingSample] = []
        for (i, sample) in batches[0].samples.enumerated() {
            let keep = i < from || sample.timestamp >= cutoff
            if keep { kept.append(sample) }
            keptBefore[i + 1] = keptBefore[i] + (keep ? 1 : 0)
        }
        let old = before - kept.count
        guard old > 0 else { return }
        batches[0].samples = kept
        batches[0].selfMetricsStart = keptBefore[batches[0].selfMetricsStart]
        batches[0].windowEnds = batches[0].windowEnds.map { keptBefore[$0] }
        statistics.dropped[.tooOld, default: 0] += UInt64(old)
        tooOldInEpisode += UInt64(old)
        // Once per episode (a replayed backlog meets it batch after batch): the first, then the sum at its end.
        guard !tooOldLogged else { return }
        tooOldLogged = true
        logger.error(
            "dropped \(old) samples older than \(settings.maxSampleAge) (--max-sample-age, MAX_SAMPLE_AGE_S) instead of sending them; more are counted in rapl_exporter_samples_dropped_total{reason=\"too_old\"} and summed when it ends"
        )
    }
}

// The writer's intake and per-domain series live outside the generic actor: the sampling thread calls
// `accept` through the `WindowSink` existential, where a type nested in `RemoteWriter<C>` would need its
// generic metadata looked up (a runtime hash-table search) at every window.

private struct WriterDomainSeries {
    var energy: Int
    var cumulative: Int?
    var readErrors: Int
    var glitches: Int
    var stuck: Int
}

/// Strictly increasing ms timestamps: two windows closing within one millisecond (1 kHz sampling) must
/// not produce two samples of a series with one timestamp, which receivers reject.
struct IncreasingStamps {
    /// The last timestamp given (ms); `.min` before the first.
    var last: Int64 = .min

    /// The timestamp for a sample taken at `microseconds`: its millisecond, or 1 ms past the last.
    mutating func next(_ microseconds: Int64) -> Int64 {
        let ms = microseconds / 1000
        last = ms > last ? ms : last + 1
        return last
    }
}

/// What the sampling thread hands over, behind a lock: `accept` appends a window's samples here
/// (no actor hop, no allocation once the arrays have grown), and each push interval `cutBatch`
/// takes them. The series table lives here too, since new domains add series from `accept`.
private struct WriterIntake: ~Copyable {
    var table = SeriesTable()
    var byDomain: [Domain: WriterDomainSeries] = [:]
    /// The series of the last window's domains, in its order, and their cumulative totals (µJ).
    var domains: [Domain] = []
    var series: [WriterDomainSeries] = []
    var totals: [UInt64] = []
    var pending: [PendingSample] = []
    /// The timestamps of the windows' samples, and apart from them those of the self-metrics, stamped
    /// when a batch is cut: the sampler hands windows over up to a push interval after they close (`Sampler`'s
    /// batching), so a cut's time can be later than windows still to come, which must not then look like
    /// a step of the clock.
    var windowStamps = IncreasingStamps()
    var selfStamps = IncreasingStamps()
    /// The last window's figures, for the self-metrics.
    var windows = 0
    var lateWindows: UInt64 = 0
    var missedWindows: UInt64 = 0
    var readErrors: [UInt64] = []
    var glitches: [UInt64] = []
    var stuck: [Bool] = []

    /// Energy per domain held back while the wall clock is behind the last timestamp sent.
    var held: [UInt64] = []
    var clockSteps: UInt64 = 0

    // The spool's records of the windows in `pending` (when the writer spools).
    var spooling = false
    var bootID = ""
    var backend = ""
    /// The sequence number of the next window.
    var nextSeq: UInt64 = 1
    /// Encoded records since the last cut: a source record first, then windows.
    var records: [UInt8] = []
    var recordSeqs: [UInt64] = []
    /// `pending.count` after each recorded window.
    var recordEnds: [Int] = []
    var source: SpoolSource?
    var sourceRecorded = false
    /// Per domain, the energy a window recorded (scratch, reused).
    var recordEnergy: [UInt64?] = []
    /// Restarts whose downtime could not be accounted (0 or 1: this run's start).
    var restartGaps: UInt64 = 0
    /// The latest read of the power limits: series and value, sent with the self-metrics of each cut.
    var limitSamples: [(Int, Double)] = []

    /// The records since the last cut, their windows' sequence numbers and sample ends; the next cut's
    /// records start with a source record again.
    mutating func takeRecords() -> ([UInt8], [UInt64], [Int]) {
        defer {
            records.removeAll(keepingCapacity: true)
            recordSeqs.removeAll(keepingCapacity: true)
            recordEnds.removeAll(keepingCapacity: true)
            sourceRecorded = false
        }
        return (recordSeqs.isEmpty ? [] : records, recordSeqs, recordEnds)
    }

    /// Records the window whose samples were just appended (stamped `ts`).
    mutating func record(_ window: borrowing EnergyWindow, ts: Int64) {
        if source == nil || source!.domains != domains || source!.counters.count != window.counters.count
            || !zip(source!.counters, window.counterModuli).allSatisfy({ $0.modulus == $1 })
        {
            let domains = self.domains
            source = SpoolSource(
                bootID: bootID, backend: backend, domains: domains,
                counters: zip(window.counters, window.counterModuli).map { spec, modulus in
                    SpooledCounter(source: spec.source, domainIndex: domains.firstIndex(of: spec.domain) ?? 0, modulus: modulus, unit: spec.unit)
                })
            sourceRecorded = false
        }
        if !sourceRecorded, let source {
            SpoolFormat.appendSource(source, to: &records)
            sourceRecorded = true
        }
        SpoolFormat.appendWindow(
            seq: nextSeq, timestampMilliseconds: ts, bootMicroseconds: window.bootMicroseconds, energy: recordEnergy, totals: totals,
            counterValues: window.counterValues, to: &records)
        recordSeqs.append(nextSeq)
        recordEnds.append(pending.count)
        nextSeq += 1
    }

    /// The samples of windows read back from the spool, as the current settings label them, with each
    /// window's sequence number and where its samples end.
    mutating func samples(replaying windows: [(SpoolSource, SpooledWindow)], _ labels: SeriesSettings) -> ([PendingSample], [UInt64], [Int]) {
        var samples: [PendingSample] = []
        var seqs: [UInt64] = []
        var ends: [Int] = []
        for (source, window) in windows {
            for (j, domain) in source.domains.enumerated() {
                guard let energy = window.energy[j] else { continue }
                let s = series(for: domain, labels)
                let ts = window.timestampMilliseconds
                if labels.windowEnergy { samples.append(PendingSample(series: s.energy, value: Double(energy), timestamp: ts)) }
                if let cumulative = s.cumulative {
                    samples.append(PendingSample(series: cumulative, value: Double(window.totals[j]) / 1e6, timestamp: ts))
                }
            }
            seqs.append(window.seq)
            ends.append(samples.count)
        }
        return (samples, seqs, ends)
    }

    /// A window stamped this far (ms) or more behind the last timestamp is held back rather than
    /// pushed 1 ms past it: the wall clock stepped back, and stamping the windows of the next
    /// seconds 1 ms apart would crowd them into an instant.
    static var holdAfter: Int64 { 10 }

    mutating func series(for domain: Domain, _ labels: SeriesSettings) -> WriterDomainSeries {
        if let s = byDomain[domain] { return s }
        let pairs = SeriesTable.domainLabels(domain, labels)
        let s = WriterDomainSeries(
            energy: table.series(labels.metricName, pairs, metadata: .windowEnergy),
            cumulative: labels.cumulative ? table.series(SeriesSettings.cumulativeMetricName, pairs) : nil,
            readErrors: table.series("rapl_exporter_read_errors_total", pairs),
            glitches: table.series("rapl_exporter_counter_glitches_total", pairs),
            stuck: table.series("rapl_exporter_domain_stuck", pairs)
        )
        byDomain[domain] = s
        return s
    }

    /// - Parameter holdLimit: the longest a step back (ms) is waited out; beyond it, windows are
    ///   stamped past the last timestamp as they come (the receiver already holds samples from the
    ///   wrong future).
    mutating func add(_ window: borrowing EnergyWindow, _ labels: SeriesSettings, holdLimit: Int64) {
        if window.domains != domains {
            // First window, or refresh() found a domain: look the series up again, keeping totals.
            totals = window.domains.carrying(totals, from: domains, fill: 0)
            held = window.domains.carrying(held, from: domains, fill: 0)
            domains = window.domains
            series.removeAll()
            for domain in window.domains { series.append(series(for: domain, labels)) }
        }
        // Restart marks come only with a spool; without one this path stays as it was (the window's cost is
        // the code and data it touches: docs/performance.md).
        if spooling {
            switch window.restart {
            case .accounted(let startTotals)?: totals = startTotals
            case .gap?:
                totals = domains.map { _ in 0 }
                restartGaps += 1
            case nil: break
            }
        }
        let last = windowStamps.last
        let behind = last == .min ? 0 : last &- window.endMicroseconds / 1000
        if behind >= Self.holdAfter, behind <= holdLimit {
            // The wall clock is behind what was sent: keep the energy (none is lost) and send it
            // with the first window stamped after the last timestamp.
            for i in domains.indices { if let energy = window.energy[i] { held[i] &+= energy } }
        } else {
            let ts = windowStamps.next(window.endMicroseconds)
            if spooling { recordEnergy.removeAll(keepingCapacity: true) }
            for i in domains.indices {
                guard var energy = window.energy[i] else {
                    if spooling { recordEnergy.append(nil) }
                    continue
                }
                energy &+= held[i]
                held[i] = 0
                if labels.windowEnergy { pending.append(PendingSample(series: series[i].energy, value: Double(energy), timestamp: ts)) }
                if let cumulative = series[i].cumulative {
                    totals[i] &+= energy
                    pending.append(PendingSample(series: cumulative, value: Double(totals[i]) / 1e6, timestamp: ts))
                } else if spooling {
                    // The spool records the cumulative total even when it is not sent (a later run may send it).
                    totals[i] &+= energy
                }
                if spooling { recordEnergy.append(energy) }
            }
            if spooling { record(window, ts: ts) }
        }
        clockSteps = window.clockSteps
        windows += 1
        lateWindows = window.lateWindows
        missedWindows = window.missedWindows
        readErrors.overwrite(with: window.readErrors)
        glitches.overwrite(with: window.glitches)
        stuck.overwrite(with: window.stuck)
    }
}

/// The spool's figures as self-metrics, in `names` order.
struct SpoolFigures {
    static let names = [
        "rapl_exporter_spool_bytes", "rapl_exporter_spool_writable", "rapl_exporter_spool_write_errors_total",
        "rapl_exporter_spool_windows_dropped_total", "rapl_exporter_spool_bad_records_total", "rapl_exporter_spool_windows_replayed_total",
        "rapl_exporter_restart_gaps_total",
    ]
    var statistics: Spool.Statistics

    init(_ statistics: Spool.Statistics) { self.statistics = statistics }

    func values(restartGaps: UInt64) -> [Double] {
        let s = statistics
        return [
            Double(s.bytes), s.writable ? 1 : 0, Double(s.writeErrors), Double(s.windowsDropped), Double(s.badRecords), Double(s.windowsReplayed),
            Double(restartGaps),
        ]
    }
}
