import Support

/// One raw hardware counter a backend reads.
public struct CounterSpec: Sendable, Equatable {
    /// The domain this counter contributes to. Several counters may feed one domain (AMD's per-core
    /// energy MSRs are summed into the package's `core` domain).
    public var domain: Domain
    /// Energy per raw count.
    public var unit: EnergyUnit
    /// Where it is read: a file path, or the perf event and CPU.
    public var source: String

    public init(domain: Domain, unit: EnergyUnit, source: String) {
        self.domain = domain
        self.unit = unit
        self.source = source
    }
}

/// One raw read: the counter value and the modulus it wraps at (2^32 for MSRs, 2^64 for perf,
/// `max_energy_range_uj + 1` for sysfs).
public struct RawCount: Sendable, Equatable {
    public var value: UInt64
    public var modulus: UInt128

    public init(value: UInt64, modulus: UInt128) {
        self.value = value
        self.modulus = modulus
    }
}

/// Why one counter could not be read this time. The domain is skipped for this read and retried.
public struct CounterReadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What failed and on which path.
    public var message: String
    /// How to fix it, when we know.
    public var fix: String?

    public init(_ message: String, fix: String? = nil) {
        self.message = message
        self.fix = fix
    }

    public var description: String {
        if let fix { return "\(message) — fix: \(fix)" }
        return message
    }
}

/// A source of raw RAPL counters: perf, MSR or sysfs powercap.
///
/// A backend only reads raw values; it never computes deltas. ``EnergyMeter`` owns deltas,
/// wraparound and unit conversion for every backend, so the three behave identically.
/// Backends hold open file descriptors and are used from one thread at a time.
public protocol EnergyBackend: AnyObject {
    var kind: BackendKind { get }
    /// The counters, in a fixed order; `read(_:)` takes an index into this array. It may grow when
    /// ``refresh()`` finds a domain that was missing at start.
    var counters: [CounterSpec] { get }
    /// Reads counter `index`. A counter whose file or device is closed is reopened here.
    func read(_ index: Int) throws(CounterReadError) -> RawCount
    /// Retries whatever discovery failed at start (a zone without a readable `name`, say);
    /// returns messages about what it found or still cannot read.
    func refresh() -> [String]
    /// Facts worth one log line at start: wrap periods, units, skipped domains.
    var notes: [String] { get }
}

extension EnergyBackend {
    public func refresh() -> [String] { [] }
}

/// Why a backend cannot be used, and what would fix it.
public struct BackendUnavailable: Error, Sendable, Equatable, CustomStringConvertible {
    public var backend: BackendKind
    public var reason: String
    public var fix: String

    public init(_ backend: BackendKind, reason: String, fix: String) {
        self.backend = backend
        self.reason = reason
        self.fix = fix
    }

    public var description: String { "\(backend): \(reason) — fix: \(fix)" }
}

/// The wrap period of a counter, for the start-up log: how much energy fits in its range, and how
/// long that lasts at a high package power. Reading more often than that keeps deltas exact.
func wrapNote(_ domain: Domain, source: String, rangeMicrojoules: Double, bits: String) -> String {
    let joules = rangeMicrojoules / 1e6
    let referenceWatts = 250.0
    let seconds = joules / referenceWatts
    return "\(domain.component()) (socket \(domain.socket)) \(source): \(bits) counter wraps after "
        + "\(formatted(joules, 0)) J, every \(formatted(seconds, seconds < 10 ? 2 : 0)) s at \(Int(referenceWatts)) W; "
        + "reads must come more often than that"
}
