import Logging
import RAPLBackend
import ServiceLifecycle

/// Takes each read of the power limits: the /metrics state and the remote writer.
public protocol PowerLimitsSink: Sendable {
    func accept(limits: PowerLimitSnapshot)
}

/// One sample of a limits read, by the name it is pushed under.
struct LimitSample {
    var name: String
    var domain: Domain
    /// Labels beside the domain's (`constraint`).
    var extra: [(String, String)]
    var value: Double
}

extension PowerLimitSnapshot {
    /// The series names, in the order every output writes them.
    static let seriesNames = [
        "rapl_power_limit_watts", "rapl_power_limit_time_window_seconds", "rapl_power_limit_enabled", "rapl_power_limit_clamp_enabled",
        "rapl_power_limit_locked", "rapl_tdp_watts", "rapl_throttled_seconds_total", "rapl_exporter_throttle_glitches_total",
    ]

    /// Every sample of this read (a field a source does not have is left out, not sent as 0).
    var samples: [LimitSample] {
        var out: [LimitSample] = []
        func flag(_ value: Bool?) -> Double? { value.map { $0 ? 1 : 0 } }
        for l in limits {
            let c = [("constraint", l.constraint)]
            out.append(LimitSample(name: "rapl_power_limit_watts", domain: l.domain, extra: c, value: l.watts))
            if let w = l.timeWindowSeconds {
                out.append(LimitSample(name: "rapl_power_limit_time_window_seconds", domain: l.domain, extra: c, value: w))
            }
            if let e = flag(l.enabled) { out.append(LimitSample(name: "rapl_power_limit_enabled", domain: l.domain, extra: c, value: e)) }
            if let k = flag(l.clamped) { out.append(LimitSample(name: "rapl_power_limit_clamp_enabled", domain: l.domain, extra: c, value: k)) }
            if let k = flag(l.locked) { out.append(LimitSample(name: "rapl_power_limit_locked", domain: l.domain, extra: c, value: k)) }
        }
        out += tdp.map { LimitSample(name: "rapl_tdp_watts", domain: $0.domain, extra: [], value: $0.value) }
        out += throttledSeconds.map { LimitSample(name: "rapl_throttled_seconds_total", domain: $0.domain, extra: [], value: $0.value) }
        out += throttleGlitches.map { LimitSample(name: "rapl_exporter_throttle_glitches_total", domain: $0.domain, extra: [], value: $0.value) }
        return out.sorted { a, b in
            let (i, j) = (Self.seriesNames.firstIndex(of: a.name)!, Self.seriesNames.firstIndex(of: b.name)!)
            return i != j ? i < j : a.domain < b.domain
        }
    }
}

/// Re-reads the power limits, TDP and throttle counters every `interval` (`--power-limits-interval`), on
/// the daemon's event loop — never on the sampling thread — and hands each read to the sinks. Generic
/// over its clock (tests use a manual one). The reader is used only by `run()`.
public final class PowerLimitsService<C: Clock>: Service, @unchecked Sendable where C.Duration == Duration {
    private let reader: PowerLimitReader
    public let interval: Duration
    private let clock: C
    private let sinks: [any PowerLimitsSink]

    public init(reader: sending PowerLimitReader, interval: Duration, clock: C, sinks: [any PowerLimitsSink]) {
        self.reader = reader
        self.interval = interval
        self.clock = clock
        self.sinks = sinks
    }

    public func run() async throws {
        let origin = clock.now
        await cancelWhenGracefulShutdown {
            var next = origin
            while !Task.isCancelled {
                let snapshot = self.reader.read(now: origin.duration(to: self.clock.now))
                for sink in self.sinks { sink.accept(limits: snapshot) }
                next = next.advanced(by: self.interval)
                do { try await self.clock.sleep(until: next, tolerance: nil) } catch { return }
            }
        }
    }
}
