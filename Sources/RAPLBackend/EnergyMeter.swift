import Logging
import Support

/// The state of one domain after a read.
public enum DomainStatus: Sendable, Equatable {
    /// Read this time and moving.
    case ok
    /// Read this time, but the value has not changed for at least `stuckAfter`: this is probably not
    /// real zero power (a VM's placeholder counter, a domain the firmware does not update).
    case stuck
    /// Not read this time (or never yet): the message says why. The energy used meanwhile is not
    /// lost: it appears in the first successful read after.
    case failed(String)
    /// Read, but the counter moved in a way no hardware can (it stepped back, was reset, or jumped
    /// further than the domain's power bound allows): that step is not energy. Nothing is exported for
    /// it and the counter is re-based on its new value; the message gives the numbers.
    case glitch(String)

    /// Whether this is ``stuck`` (without comparing the other cases' messages).
    public var isStuck: Bool {
        if case .stuck = self { return true }
        return false
    }
}

/// Owns counter deltas, wraparound and unit conversion for every backend.
///
/// For each raw counter it keeps the last raw value and the running raw total since the first read
/// (widened to 128 bits: wrapping subtraction modulo the counter's range handles 32-bit MSRs, 64-bit
/// perf counts and sysfs's `max_energy_range_uj`). The µJ total of a counter is the exact conversion
/// of its raw total, and a domain's total is the sum over its counters. Totals only go up, so the
/// energy of a window (end total minus start total) is exact and windows add up to the run.
///
/// Not thread-safe: one sampler owns a meter.
public final class EnergyMeter {
    public let backend: any EnergyBackend
    /// The domains, in a stable order (sorted); `totals` and `statuses` use the same indices.
    public var domains: [Domain] { ledger.domains }
    /// Cumulative µJ per domain since the meter first read it.
    public var totals: [UInt64] { ledger.totals }
    public var statuses: [DomainStatus] { ledger.statuses }
    /// Failed reads per domain since start.
    public var readErrors: [UInt64] { ledger.readErrors }
    /// Counter steps per domain since start that were impossible as energy (see ``DomainStatus/glitch(_:)``).
    public var glitches: [UInt64] { ledger.glitches }
    /// The most power one counter can plausibly report; a step that would need more is a glitch.
    public var maximumPower: Double { ledger.maximumPowerWatts }

    /// A domain whose total has not changed for this long is reported as stuck.
    public var stuckAfter: Duration { ledger.stuckAfter }
    /// The longest wait before a failed counter is read again. A first failure is retried at the next
    /// read (a transient error costs one window), then the wait doubles from 10 ms up to this, so a
    /// missing device costs about one syscall per `retryAfter`, not one per sample.
    public var retryAfter: Duration { ledger.retryAfter }

    /// All per-counter and per-domain state in one value. Unchecked for exclusive access: a meter is
    /// owned by one thread (the sampler's), and the runtime check Swift otherwise makes at every access
    /// to a class's stored property (`swift_beginAccess`, a thread-local access-set look-up) was the
    /// sampling thread's largest single cost per window (callgrind, docs/performance.md).
    @exclusivity(unchecked) private var ledger: Ledger

    /// The default bound on one counter's power, in watts: far above any package, DRAM or platform
    /// domain shipped so far (the largest server packages draw about 500 W, bursts up to twice that),
    /// far below what a counter glitch looks like (a 1 µJ step back on a 2^32-count counter reads as
    /// ~65–262 kJ). `--max-domain-power` / `MAX_DOMAIN_POWER_W` overrides it.
    public static let defaultMaximumPower = 5000.0

    /// - Parameter maximumPower: the most watts one counter can report (see ``defaultMaximumPower``).
    ///   A step needing more over the time since the counter last changed (plus ``glitchGrace`` for the
    ///   hardware's update granularity) is a glitch, not energy.
    public init(
        backend: any EnergyBackend,
        stuckAfter: Duration = .seconds(5),
        retryAfter: Duration = .seconds(1),
        maximumPower: Double = EnergyMeter.defaultMaximumPower,
        logger: Logger = Logger(label: "rapl-exporter.meter")
    ) {
        self.backend = backend
        ledger = Ledger(stuckAfter: stuckAfter, retryAfter: retryAfter, maximumPowerWatts: maximumPower, logger: logger)
        ledger.adoptNewCounters(backend.counters)
    }

    func retryDelay(afterFailures n: Int) -> Duration { ledger.retryDelay(afterFailures: n) }

    /// The raw value of every counter (in `backend.counters` order) as of its last successful read,
    /// written into `values` in place (no allocation once it has grown): what a restart continues from.
    public func copyCounterValues(into values: inout [UInt64]) {
        values.removeAll(keepingCapacity: true)
        for i in ledger.counters.indices { values.append(ledger.counters[i].last) }
    }

    /// The modulus each counter wraps at (0 until it was first read).
    public var counterModuli: [UInt128] { ledger.moduli }

    /// Whether each counter's last read succeeded.
    public var counterReadable: [Bool] { ledger.counters.map { $0.primed && $0.failing == nil } }

    /// Index of `domain` in `domains`.
    public func index(of domain: Domain) -> Int? { ledger.domains.firstIndex(of: domain) }

    /// Asks the backend to retry failed discovery and takes in any counters it found.
    public func refresh() {
        for message in backend.refresh() { ledger.logger.warning("\(message)") }
        ledger.adoptNewCounters(backend.counters)
    }

    /// Reads every counter once and updates `totals` and `statuses`. Never throws: a counter that
    /// cannot be read marks its domain failed for this read, is logged once, and is retried later.
    /// - Parameter now: monotonic time since any fixed origin (the sampler's clock), for retry and
    ///   stuck timing.
    public func read(now: Duration) {
        ledger.readCounters(backend, nanoseconds: now.wholeNanoseconds)
        // Everything queued, this read last: with reads queued by readCounters the state is still this one's.
        while ledger.applyNextRead(backend) {}
    }

    /// The first half of ``read(now:)``, with the time in whole nanoseconds (the sampler's clock, made a
    /// `Duration` only when the read is applied): reads every counter now (the syscalls only) and queues the raw
    /// values; ``applyNextRead()`` later turns the oldest queued read into totals and statuses, exactly
    /// as ``read(now:)`` would have. Split so that the sampling thread does only the reads at each
    /// deadline and the arithmetic for a batch's windows back to back, while its code is in the
    /// CPU's caches (docs/performance.md). A counter waiting to retry is not read, as in ``read(now:)``;
    /// the wait is decided from the reads applied so far, and a read the applied state says should
    /// have waited is set aside when applied, so the outcome is the same.
    public func readCounters(nowNanoseconds: Int64) {
        ledger.readCounters(backend, nanoseconds: nowNanoseconds)
    }

    /// Applies the oldest read queued by ``readCounters(nowNanoseconds:)``; false when none is queued.
    @discardableResult
    public func applyNextRead() -> Bool {
        ledger.applyNextRead(backend)
    }
}

/// Raw reads taken by `readCounters` and not applied yet: two flat arrays of plain values (no payloads
/// to retain), one entry per counter per read, emptied in place once all are applied.
private struct ReadQueue {
    enum Outcome: UInt8 {
        case read, failed, waiting
    }

    /// 16 bytes: a read of four counters is one cache line. A counter's modulus is queued only when it
    /// differs from the one queued before (`moduli`), which is rare (a sysfs range re-read).
    struct Entry {
        var value: UInt64
        var outcome: Outcome
    }

    struct Round {
        /// The time of the read, in nanoseconds.
        var now: Int64
        /// Where the read's entries start, and how many counters it read (the backend's count then).
        var start: Int
        var count: Int
    }

    var rounds: [Round] = []
    var entries: [Entry] = []
    /// The error of each failed entry, by entry index (failures only: the common read adds nothing).
    var errors: [Int: CounterReadError] = [:]
    /// The modulus of each entry whose counter's modulus differs from the one queued before it.
    var moduli: [Int: UInt128] = [:]
    var applied = 0

    mutating func clear() {
        rounds.removeAll(keepingCapacity: true)
        entries.removeAll(keepingCapacity: true)
        if !errors.isEmpty { errors.removeAll() }
        if !moduli.isEmpty { moduli.removeAll() }
        applied = 0
    }
}

private struct Ledger {
    struct CounterState {
        var domainIndex: Int
        var last: UInt64 = 0
        var rawTotal: UInt128 = 0
        var microjoules: UInt64 = 0
        var primed = false
        var failing: String?
        var retryAt: Duration?
        var failures: UInt64 = 0
        var consecutiveFailures = 0
    }

    /// Added to the time between two reads before the power bound is applied: RAPL counters update
    /// about every millisecond (some parts every few), so a read can see a little more than the time
    /// since the previous one.
    static let glitchGraceDuration = Duration.milliseconds(50)
    static let glitchGrace = glitchGraceDuration.seconds

    let stuckAfter: Duration
    let retryAfter: Duration
    let maximumPowerWatts: Double
    let logger: Logger
    var domains: [Domain] = []
    var totals: [UInt64] = []
    var statuses: [DomainStatus] = []
    var readErrors: [UInt64] = []
    var glitches: [UInt64] = []
    var counters: [CounterState] = []
    /// The unit of each counter (the backend's counter list is fixed once adopted).
    var units: [EnergyUnit] = []
    /// The modulus of each counter, from its reads (0 until the first).
    var moduli: [UInt128] = []
    /// The modulus of each counter as last queued by `readCounters` (ahead of `moduli` while reads wait).
    var queuedModuli: [UInt128] = []
    /// How many counters have a `retryAt` (failed, not read again successfully): while none has, a read
    /// checks no counter's state (a deadline touches as little memory as it can, docs/performance.md).
    var retrying = 0
    /// Per counter: the most raw counts per second its domain can plausibly advance by.
    var countsPerSecond: [Double] = []
    /// Per counter: the monotonic time its value last changed (a step's energy was used since then).
    /// Kept beside `counters`, not in it, so the per-read copies of the counter state stay small.
    var readAt: [Duration] = []
    /// Per counter: impossible steps in the current glitch episode (0: not in one).
    var episodeGlitches: [UInt64] = []
    var lastChange: [Duration?] = []
    var reportedStuck: [Bool] = []
    var domainFailure: [String?] = []
    var domainGlitch: [String?] = []
    /// Per-domain sums of the current read, reused so that a read allocates nothing.
    var scratch: [UInt64] = []
    var queue = ReadQueue()

    init(stuckAfter: Duration, retryAfter: Duration, maximumPowerWatts: Double, logger: Logger) {
        self.stuckAfter = stuckAfter
        self.retryAfter = retryAfter
        self.maximumPowerWatts = maximumPowerWatts
        self.logger = logger
    }

    func retryDelay(afterFailures n: Int) -> Duration {
        if n <= 1 { return .zero }
        var delay = Duration.milliseconds(10)
        for _ in 2..<n {
            delay *= 2
            if delay >= retryAfter { break }
        }
        return min(delay, retryAfter)
    }

    mutating func adoptNewCounters(_ specs: [CounterSpec]) {
        guard specs.count > counters.count else { return }
        let old = domains
        var all = domains
        for spec in specs[counters.count...] where !all.contains(spec.domain) { all.append(spec.domain) }
        // Domains stay sorted; per-domain state follows its domain.
        let sorted = all.sorted()
        totals = sorted.carrying(totals, from: old, fill: 0)
        statuses = sorted.carrying(statuses, from: old, fill: .failed("not read yet"))
        readErrors = sorted.carrying(readErrors, from: old, fill: 0)
        glitches = sorted.carrying(glitches, from: old, fill: 0)
        domainGlitch = sorted.carrying(domainGlitch, from: old, fill: nil)
        lastChange = sorted.carrying(lastChange, from: old, fill: nil)
        reportedStuck = sorted.carrying(reportedStuck, from: old, fill: false)
        domainFailure = sorted.carrying(domainFailure, from: old, fill: nil)
        scratch = Array(repeating: 0, count: sorted.count)
        domains = sorted
        for i in counters.indices { counters[i].domainIndex = sorted.firstIndex(of: specs[i].domain)! }
        for spec in specs[counters.count...] {
            counters.append(CounterState(domainIndex: sorted.firstIndex(of: spec.domain)!))
            units.append(spec.unit)
            moduli.append(0)
            queuedModuli.append(0)
            countsPerSecond.append(maximumPowerWatts * 1e6 / spec.unit.microjoulesPerCount)
            readAt.append(.zero)
            episodeGlitches.append(0)
        }
    }

    /// Reads every counter that is not waiting to retry and queues what came back.
    mutating func readCounters(_ backend: any EnergyBackend, nanoseconds: Int64) {
        queue.rounds.append(ReadQueue.Round(now: nanoseconds, start: queue.entries.count, count: counters.count))
        for i in counters.indices {
            if retrying > 0, let retryAt = counters[i].retryAt, Duration(wholeNanoseconds: nanoseconds) < retryAt {
                queue.entries.append(ReadQueue.Entry(value: 0, outcome: .waiting))
                continue
            }
            do {
                let raw = try backend.read(i)
                if raw.modulus != queuedModuli[i] {
                    queuedModuli[i] = raw.modulus
                    queue.moduli[queue.entries.count] = raw.modulus
                }
                queue.entries.append(ReadQueue.Entry(value: raw.value, outcome: .read))
            } catch {
                queue.errors[queue.entries.count] = error
                queue.entries.append(ReadQueue.Entry(value: 0, outcome: .failed))
            }
        }
    }

    /// Applies the oldest queued read: the deltas, wraps, glitch and stuck checks of one read.
    mutating func applyNextRead(_ backend: any EnergyBackend) -> Bool {
        guard queue.applied < queue.rounds.count else { return false }
        let round = queue.rounds[queue.applied]
        let now = Duration(wholeNanoseconds: round.now)
        let first = round.start
        let read = round.count
        queue.applied += 1
        for d in domainFailure.indices where domainFailure[d] != nil { domainFailure[d] = nil }
        for d in domainGlitch.indices where domainGlitch[d] != nil { domainGlitch[d] = nil }
        for i in counters.indices {
            let d = counters[i].domainIndex
            // A counter adopted after this read was taken was not read in it.
            guard i < read else {
                domainFailure[d] = "not read yet"
                continue
            }
            if let retryAt = counters[i].retryAt, now < retryAt {
                domainFailure[d] = counters[i].failing ?? "waiting to retry"
                continue
            }
            let entry = first + i
            let queued = queue.entries[entry]
            switch queued.outcome {
            case .waiting:
                // Not read: waiting to retry after a failure applied before this read was taken.
                domainFailure[d] = counters[i].failing ?? "waiting to retry"
                continue
            case .failed:
                failed(i, queue.errors[entry] ?? CounterReadError("read failed"), backend, now: now)
                continue
            case .read:
                break
            }
            if !queue.moduli.isEmpty, let modulus = queue.moduli[entry] { moduli[i] = modulus }
            let raw = RawCount(value: queued.value, modulus: moduli[i])
            if counters[i].primed {
                // Wrapping subtraction modulo the counter's range.
                if raw.value != counters[i].last {
                    let last = UInt128(counters[i].last)
                    let value = UInt128(raw.value)
                    let delta = value >= last ? value - last : raw.modulus - last + value
                    if isPlausible(i, delta: delta, modulus: raw.modulus, now: now) {
                        counters[i].rawTotal &+= delta
                        counters[i].microjoules = units[i].microjoules(counters[i].rawTotal)
                        if episodeGlitches[i] > 0 { glitchEnded(i, backend) }
                    } else {
                        glitched(i, backend, from: counters[i].last, to: raw.value, delta: delta, now: now)
                    }
                    // The time of the last change, not of the last read: a counter the hardware
                    // updates every few ms, read at 1 kHz, steps by what accumulated since it moved.
                    readAt[i] = now
                } else if episodeGlitches[i] > 0 {
                    glitchEnded(i, backend)
                }
            } else {
                counters[i].primed = true
                readAt[i] = now
            }
            counters[i].last = raw.value
            if counters[i].failing != nil { recovered(i, backend) }
        }
        if queue.applied == queue.rounds.count { queue.clear() }
        for d in scratch.indices { scratch[d] = 0 }
        // By index: iterating the elements would copy each counter's state (its optional message).
        for i in counters.indices { scratch[counters[i].domainIndex] &+= counters[i].microjoules }
        for d in domains.indices {
            let total = scratch[d]
            if let failure = domainFailure[d] {
                statuses[d] = .failed(failure)
                continue
            }
            if domainGlitch[d] != nil {
                // Other counters of the domain may have moved: their energy stays in the total and
                // reaches the next window, as after a failed read.
                statuses[d] = .glitch(domainGlitch[d]!)
                continue
            }
            if total != totals[d] || lastChange[d] == nil {
                if total != totals[d], reportedStuck[d] {
                    logger.notice("\(domains[d].component()) (socket \(domains[d].socket)): counter moves again")
                    reportedStuck[d] = false
                }
                totals[d] = total
                lastChange[d] = now
                statuses[d] = .ok
            } else if let since = lastChange[d], now - since >= stuckAfter {
                statuses[d] = .stuck
                if !reportedStuck[d] {
                    reportedStuck[d] = true
                    logger.warning(
                        "\(domains[d].component()) (socket \(domains[d].socket)) via \(backend.kind): counter has not changed for \(stuckAfter); it reads as zero power, which is probably not real (a VM or firmware that does not update this RAPL domain). Values are still exported."
                    )
                }
            } else {
                statuses[d] = .ok
            }
        }
        return true
    }

    /// Whether a step of `delta` counts since the counter last changed can be energy: within the power
    /// bound over the time since then. When the bound allows a whole range of the counter, a wrap
    /// cannot be told from a glitch and the step is taken as it reads.
    @inline(__always)
    private func isPlausible(_ i: Int, delta: UInt128, modulus: UInt128, now: Duration) -> Bool {
        // The time the step needs at the bound; delta < modulus ≤ 2^64.
        let needed = Double(UInt64(truncatingIfNeeded: delta)) / countsPerSecond[i]
        // Within the grace it is plausible whenever it came: one float division, no time arithmetic
        // (every step of a real counter read more often than every 50 ms at 5 kW).
        if needed <= Self.glitchGrace { return true }
        let elapsed = now - readAt[i] + Self.glitchGraceDuration
        if needed < 1e9, elapsed >= .nanoseconds(Int64(needed * 1e9)) { return true }
        // When the bound allows a whole range, a wrap cannot be told from a glitch: take it as it reads.
        let rangeNeeded = Double(UInt64(truncatingIfNeeded: modulus - 1)) / countsPerSecond[i]
        return rangeNeeded < 1e9 && elapsed >= .nanoseconds(Int64(rangeNeeded * 1e9))
    }

    /// Counter `i` stepped impossibly: no energy for this step, re-based on the new value (the caller
    /// stores it), counted; logged once per episode with the numbers.
    private mutating func glitched(_ i: Int, _ backend: any EnergyBackend, from last: UInt64, to value: UInt64, delta: UInt128, now: Duration) {
        let d = counters[i].domainIndex
        glitches[d] += 1
        episodeGlitches[i] += 1
        let seconds = (now - readAt[i]).seconds
        let joules = Double(UInt64(truncatingIfNeeded: delta)) * units[i].microjoulesPerCount / 1e6
        let direction = value < last ? "stepped back" : "jumped forward"
        let message =
            "counter \(direction) from \(last) to \(value) in \(formatted(seconds * 1000, 1)) ms: as energy that is \(formatted(joules, 3)) J (\(formatted(joules / max(seconds, 1e-9), 0)) W), over the bound of \(formatted(maximumPowerWatts, 0)) W"
        domainGlitch[d] = message
        if episodeGlitches[i] == 1 {
            let spec = backend.counters[i]
            logger.warning(
                "\(spec.domain.component()) (socket \(spec.domain.socket)) \(spec.source): \(message); not energy (a firmware or driver glitch, a reset or a hot-plug): no energy exported for this step, counting again from the new value"
            )
        }
    }

    /// Counter `i` moved plausibly after a glitch episode.
    private mutating func glitchEnded(_ i: Int, _ backend: any EnergyBackend) {
        let spec = backend.counters[i]
        logger.notice(
            "\(spec.domain.component()) (socket \(spec.domain.socket)) \(spec.source): counter consistent again after \(episodeGlitches[i]) impossible step(s)"
        )
        episodeGlitches[i] = 0
    }

    /// Counter `i` read again after failing.
    private mutating func recovered(_ i: Int, _ backend: any EnergyBackend) {
        logger.notice("\(backend.counters[i].source): readable again after \(counters[i].failures) failed reads (\(counters[i].failing ?? ""))")
        counters[i].failing = nil
        if counters[i].retryAt != nil { retrying -= 1 }
        counters[i].retryAt = nil
        counters[i].consecutiveFailures = 0
    }

    private mutating func failed(_ i: Int, _ error: CounterReadError, _ backend: any EnergyBackend, now: Duration) {
        let d = counters[i].domainIndex
        counters[i].failures += 1
        readErrors[d] += 1
        if counters[i].failing == nil {
            let spec = backend.counters[i]
            logger.warning(
                "\(spec.domain.component()) (socket \(spec.domain.socket)): \(error); skipped, retried at the next read, then backing off to every \(retryAfter)"
            )
        }
        counters[i].failing = error.description
        counters[i].consecutiveFailures += 1
        if counters[i].retryAt == nil { retrying += 1 }
        counters[i].retryAt = now + retryDelay(afterFailures: counters[i].consecutiveFailures)
        domainFailure[d] = error.description
    }
}
