import RAPLBackend
import Synchronization

/// What a scrape of `/metrics` reports, as of the latest closed window: the cumulative energy per domain
/// since the exporter started (the sum of every window's energy, the same µJ the push path sends, so the
/// two never disagree) and the sampler's self-metrics.
public struct ScrapeFigures: Sendable, Equatable {
    public var domains: [Domain] = []
    /// µJ per domain since the start.
    public var totals: [UInt64] = []
    public var readErrors: [UInt64] = []
    public var glitches: [UInt64] = []
    public var stuck: [Bool] = []
    public var windows: UInt64 = 0
    public var lateWindows: UInt64 = 0
    public var missedWindows: UInt64 = 0
    public var clockSteps: UInt64 = 0
    /// Wall-clock end of the latest window, µs since the epoch (0 before the first).
    public var lastWindowMicroseconds: Int64 = 0

    public init() {}

    /// Adds `window` to the totals (a domain new since the last window starts at 0; a domain gone keeps
    /// nothing: its series ends).
    mutating func add(_ window: borrowing EnergyWindow) {
        if window.domains != domains {
            totals = window.domains.carrying(totals, from: domains, fill: 0)
            domains = window.domains
        }
        for i in domains.indices {
            if let energy = window.energy[i] { totals[i] &+= energy }
        }
        readErrors.overwrite(with: window.readErrors)
        glitches.overwrite(with: window.glitches)
        stuck.overwrite(with: window.stuck)
        windows &+= 1
        lateWindows = window.lateWindows
        missedWindows = window.missedWindows
        clockSteps = window.clockSteps
        lastWindowMicroseconds = window.endMicroseconds
    }
}

/// The window sink behind `/metrics`. The sampling thread never waits for a scrape: it keeps its own
/// running figures and publishes them only when the lock is free (`withLockIfAvailable`); a scrape
/// holds the lock only to copy those few arrays, never while formatting or writing. When a scrape
/// happens to hold it, that window is published with the next one (its energy is in the totals
/// either way).
public final class ScrapeState: WindowSink, PowerLimitsSink, @unchecked Sendable {
    /// The sampling thread's own figures: touched by that thread only (`accept`).
    @exclusivity(unchecked) private var running = ScrapeFigures()
    private let published = Mutex(ScrapeFigures())
    /// Windows whose publication found the lock taken (and went out with a later one).
    private let deferred = Atomic<UInt64>(0)

    public init() {}

    /// On the sampling thread.
    public func accept(_ window: borrowing EnergyWindow) {
        running.add(window)
        let published = published.withLockIfAvailable { figures -> Bool in
            figures.overwrite(from: running)
            return true
        }
        if published == nil { deferred.add(1, ordering: .relaxed) }
    }

    /// Copies the latest published figures into `figures` (into its own storage: the sampling thread's
    /// next publication then overwrites in place instead of copying on write).
    public func read(into figures: inout ScrapeFigures) {
        published.withLock { figures.overwrite(from: $0) }
    }

    /// The writer's figures, when pushing: published by the writer after each request and batch.
    private let push = Mutex<PushFigures?>(nil)

    public func publish(_ figures: PushFigures) { push.withLock { $0 = figures } }

    /// The writer's latest figures; nil when not pushing.
    public var pushFigures: PushFigures? { push.withLock { $0 } }

    /// The latest read of the power limits (`PowerLimitsService`); nil until the first, or when off.
    private let limits = Mutex<PowerLimitSnapshot?>(nil)

    public func accept(limits snapshot: PowerLimitSnapshot) { limits.withLock { $0 = snapshot } }

    public var limitsSnapshot: PowerLimitSnapshot? { limits.withLock { $0 } }

    /// Runs `body` holding the lock a scrape takes (tests: a scrape in progress).
    func whileScraping(_ body: () -> Void) { published.withLock { _ in body() } }

    /// Windows published late because a scrape held the lock.
    public var deferredPublications: UInt64 { deferred.load(ordering: .relaxed) }
}

extension ScrapeFigures {
    /// Becomes a copy of `other`, reusing its own arrays' storage (no allocation once they have grown).
    mutating func overwrite(from other: ScrapeFigures) {
        if domains != other.domains { domains = other.domains }
        totals.overwrite(with: other.totals)
        readErrors.overwrite(with: other.readErrors)
        glitches.overwrite(with: other.glitches)
        stuck.overwrite(with: other.stuck)
        windows = other.windows
        lateWindows = other.lateWindows
        missedWindows = other.missedWindows
        clockSteps = other.clockSteps
        lastWindowMicroseconds = other.lastWindowMicroseconds
    }
}

/// The remote writer's counters, for /metrics when both pull and push run.
public struct PushFigures: Sendable, Equatable {
    public var sent: UInt64
    public var failed: UInt64
    public var retried: UInt64
    /// Samples dropped for one reason (a `RemoteWriter.DropReason` raw value).
    public struct Dropped: Sendable, Equatable {
        public var reason: String
        public var samples: UInt64
        public init(reason: String, samples: UInt64) {
            self.reason = reason
            self.samples = samples
        }
    }

    /// By reason: `rejected`, `queue_full`, `too_old`, `shutdown`, in that order.
    public var dropped: [Dropped]
    public var requests: UInt64
    public var pending: Int
    public var lastPushSeconds: Double
    /// With a spool: its self-metrics, by name as pushed (`rapl_exporter_spool_bytes`, …), in a fixed order.
    public var spool: [(name: String, value: Double)] = []

    public static func == (a: PushFigures, b: PushFigures) -> Bool {
        a.sent == b.sent && a.failed == b.failed && a.retried == b.retried && a.dropped == b.dropped && a.requests == b.requests
            && a.pending == b.pending && a.lastPushSeconds == b.lastPushSeconds
            && a.spool.map(\.name) == b.spool.map(\.name) && a.spool.map(\.value) == b.spool.map(\.value)
    }

    public init(
        sent: UInt64, failed: UInt64, retried: UInt64, dropped: [Dropped], requests: UInt64, pending: Int,
        lastPushSeconds: Double
    ) {
        self.sent = sent
        self.failed = failed
        self.retried = retried
        self.dropped = dropped
        self.requests = requests
        self.pending = pending
        self.lastPushSeconds = lastPushSeconds
    }
}

/// Several sinks fed the same windows, in order (the remote writer and the /metrics state).
public struct WindowSinks: WindowSink {
    public let sinks: [any WindowSink]

    public init(_ sinks: [any WindowSink]) { self.sinks = sinks }

    public func accept(_ window: borrowing EnergyWindow) {
        for sink in sinks { sink.accept(window) }
    }

    public func batchHandedOver() {
        for sink in sinks { sink.batchHandedOver() }
    }
}
