import RAPLBackend
import Support

/// Decides, at start, whether the energy used while the exporter was down can be accounted for: the
/// spool's last window (the anchor) holds every raw counter's value at its end; when the new run reads
/// the same counters on the same boot soon enough that none of them can have wrapped, the difference is
/// exact, and the first window of the run (the gap window) carries it. Otherwise the downtime is a gap:
/// logged, counted (`rapl_exporter_restart_gaps_total`), and the cumulative counter starts again from 0.
public struct RestartCheck: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// µJ per domain (of the new run) used between the anchor and the first read, the cumulative
        /// totals per domain at the anchor, and the downtime.
        case accounted(gap: [UInt64], totals: [UInt64], downtimeMicroseconds: Int64)
        /// Why not.
        case gap(String)
    }

    public var anchor: SpoolAnchor
    public var bootID: String
    public var backend: String
    /// `--max-domain-power`: the most a counter can advance per second bounds how long it cannot wrap.
    public var maximumPower: Double

    public init(anchor: SpoolAnchor, bootID: String, backend: String, maximumPower: Double) {
        self.anchor = anchor
        self.bootID = bootID
        self.backend = backend
        self.maximumPower = maximumPower
    }

    /// - Parameters: the new run's domains, counters (with their moduli), the first read's raw values,
    ///   which counters that read succeeded for, and CLOCK_BOOTTIME then.
    public func evaluate(
        domains: [Domain], counters: [CounterSpec], moduli: [UInt128], values: [UInt64], readable: [Bool], nowBootMicroseconds: Int64
    ) -> Outcome {
        let source = anchor.source
        let window = anchor.window
        guard source.bootID == bootID, !bootID.isEmpty else {
            return .gap("the machine restarted (boot id \(source.bootID.prefix(8))… then, \(bootID.prefix(8))… now): counters started again")
        }
        guard source.backend == backend else {
            return .gap("the backend changed (\(source.backend) then, \(backend) now)")
        }
        guard backend != BackendKind.perf.rawValue else {
            return .gap("perf counters count from zero each time they are opened: the energy used while stopped cannot be known")
        }
        guard source.counters.count == counters.count,
            zip(source.counters, zip(counters, moduli)).allSatisfy({ old, new in
                old.source == new.0.source && source.domains[old.domainIndex] == new.0.domain && old.unit == new.0.unit && old.modulus == new.1
            })
        else {
            return .gap("the counters differ from those of the last spooled window (a domain appeared or went)")
        }
        guard window.energy.allSatisfy({ $0 != nil }) else {
            return .gap("the last spooled window had a domain that could not be read")
        }
        guard readable.allSatisfy({ $0 }) else {
            return .gap("a counter could not be read at start")
        }
        let downtime = nowBootMicroseconds - window.bootMicroseconds
        guard downtime >= 0 else { return .gap("CLOCK_BOOTTIME went back (\(downtime) µs)") }
        let seconds = Double(downtime) / 1e6
        // The shortest time any counter takes to wrap at the power bound: a longer downtime could hide a wrap.
        var shortest = Double.infinity
        for (counter, modulus) in zip(counters, moduli) {
            let joules = Double(modulus) * counter.unit.microjoulesPerCount / 1e6
            shortest = min(shortest, joules / maximumPower)
        }
        guard seconds < shortest else {
            return .gap(
                "down \(formatted(seconds, 1)) s, longer than the \(formatted(shortest, 1)) s a counter needs to wrap at --max-domain-power \(formatted(maximumPower, 0)) W"
            )
        }
        var gap = [UInt64](repeating: 0, count: domains.count)
        for i in counters.indices {
            let old = UInt128(window.counterValues[i])
            let new = UInt128(values[i])
            let delta = new >= old ? new - old : moduli[i] - old + new
            let microjoules = counters[i].unit.microjoules(delta)
            // The same bound as a glitch: a step the domain could not have made in the downtime.
            if Double(microjoules) / 1e6 > maximumPower * (seconds + 0.05) {
                return .gap(
                    "\(counters[i].source) moved \(formatted(Double(microjoules) / 1e6, 3)) J in \(formatted(seconds, 1)) s: not energy (reset or reloaded)"
                )
            }
            guard let d = domains.firstIndex(of: counters[i].domain) else { return .gap("a counter's domain is unknown") }
            gap[d] &+= microjoules
        }
        let totals = domains.map { d in source.domains.firstIndex(of: d).map { window.totals[$0] } ?? 0 }
        return .accounted(gap: gap, totals: totals, downtimeMicroseconds: downtime)
    }
}

/// What a run knows about the restart, on its first window.
public enum RestartMark: Sendable, Equatable {
    /// The window is the gap window; the cumulative totals continue from these (µJ per domain).
    case accounted(totals: [UInt64])
    /// The downtime could not be accounted: the totals start again from 0.
    case gap
}
