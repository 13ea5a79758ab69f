import Logging

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

    /// A domain whose total has not changed for this long is reported as stuck.
    public var stuckAfter: Duration { ledger.stuckAfter }
    /// The longest wait before a failed counter is read again. A first failure is retried at the next
    /// read (a transient error costs one window), then the wait doubles from 10 ms up to this, so a
    /// missing device costs about one syscall per `retryAfter`, not one per sample.
    public var retryAfter: Duration { ledger.retryAfter }

    /// All per-counter and per-domain state in one value, so that a read is one exclusive access to
    /// one stored property (a class's stored properties are checked for exclusive access at every
    /// access otherwise: several checks per counter per read).
    private var ledger: Ledger

    public init(
        backend: any EnergyBackend,
        stuckAfter: Duration = .seconds(5),
        retryAfter: Duration = .seconds(1),
        logger: Logger = Logger(label: "rapl-exporter.meter")
    ) {
        self.backend = backend
        ledger = Ledger(stuckAfter: stuckAfter, retryAfter: retryAfter, logger: logger)
        ledger.adoptNewCounters(backend.counters)
    }

    func retryDelay(afterFailures n: Int) -> Duration { ledger.retryDelay(afterFailures: n) }

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
        ledger.read(backend, now: now)
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

    let stuckAfter: Duration
    let retryAfter: Duration
    let logger: Logger
    var domains: [Domain] = []
    var totals: [UInt64] = []
    var statuses: [DomainStatus] = []
    var readErrors: [UInt64] = []
    var counters: [CounterState] = []
    /// The unit of each counter (the backend's counter list is fixed once adopted).
    var units: [EnergyUnit] = []
    var lastChange: [Duration?] = []
    var reportedStuck: [Bool] = []
    var domainFailure: [String?] = []
    /// Per-domain sums of the current read, reused so that a read allocates nothing.
    var scratch: [UInt64] = []

    init(stuckAfter: Duration, retryAfter: Duration, logger: Logger) {
        self.stuckAfter = stuckAfter
        self.retryAfter = retryAfter
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
        lastChange = sorted.carrying(lastChange, from: old, fill: nil)
        reportedStuck = sorted.carrying(reportedStuck, from: old, fill: false)
        domainFailure = sorted.carrying(domainFailure, from: old, fill: nil)
        scratch = Array(repeating: 0, count: sorted.count)
        domains = sorted
        for i in counters.indices { counters[i].domainIndex = sorted.firstIndex(of: specs[i].domain)! }
        for spec in specs[counters.count...] {
            counters.append(CounterState(domainIndex: sorted.firstIndex(of: spec.domain)!))
            units.append(spec.unit)
        }
    }

    mutating func read(_ backend: any EnergyBackend, now: Duration) {
        for d in domainFailure.indices where domainFailure[d] != nil { domainFailure[d] = nil }
        for i in counters.indices {
            let d = counters[i].domainIndex
            if let retryAt = counters[i].retryAt, now < retryAt {
                domainFailure[d] = counters[i].failing ?? "waiting to retry"
                continue
            }
            do {
                let raw = try backend.read(i)
                if counters[i].primed {
                    // Wrapping subtraction modulo the counter's range.
                    if raw.value != counters[i].last {
                        let last = UInt128(counters[i].last)
                        let value = UInt128(raw.value)
                        let delta = value >= last ? value - last : raw.modulus - last + value
                        counters[i].rawTotal &+= delta
                        counters[i].microjoules = units[i].microjoules(counters[i].rawTotal)
                    }
                } else {
                    counters[i].primed = true
                }
                counters[i].last = raw.value
                if counters[i].failing != nil { recovered(i, backend) }
            } catch {
                failed(i, error, backend, now: now)
            }
        }
        for d in scratch.indices { scratch[d] = 0 }
        for c in counters { scratch[c.domainIndex] &+= c.microjoules }
        for d in domains.indices {
            let total = scratch[d]
            if let failure = domainFailure[d] {
                statuses[d] = .failed(failure)
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
    }

    /// Counter `i` read again after failing.
    private mutating func recovered(_ i: Int, _ backend: any EnergyBackend) {
        logger.notice("\(backend.counters[i].source): readable again after \(counters[i].failures) failed reads (\(counters[i].failing ?? ""))")
        counters[i].failing = nil
        counters[i].retryAt = nil
        counters[i].consecutiveFailures = 0
    }

    private mutating func failed(_ i: Int, _ error: CounterReadError, _ backend: any EnergyBackend, now: Duration) {
        let d = counters[i].domainIndex
        counters[i].failures += 1
        readErrors[d] += 1
        if counters[i].failing == nil {
            let spec = backend.counters[i]
            logger.warning("\(spec.domain.component()) (socket \(spec.domain.socket)): \(error); skipped, retried at the next read, then backing off to every \(retryAfter)")
        }
        counters[i].failing = error.description
        counters[i].consecutiveFailures += 1
        counters[i].retryAt = now + retryDelay(afterFailures: counters[i].consecutiveFailures)
        domainFailure[d] = error.description
    }
}
