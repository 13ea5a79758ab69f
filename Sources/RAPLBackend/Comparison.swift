import Support

/// `rapl-exporter compare`: every backend that works here read at the same instants (one after the
/// other, microseconds apart) for a while, and per domain each backend's watts and how far they disagree,
/// with the causes known to make them differ.
public struct BackendComparison: Sendable {
    /// One backend's figure for one domain.
    public struct Reading: Sendable, Equatable {
        public var backend: BackendKind
        public var microjoules: UInt64
        public var watts: Double
        /// Something that happened to this counter during the run (a glitch, failed reads).
        public var problem: String?
    }

    public struct Row: Sendable {
        public var domain: Domain
        public var readings: [Reading]
        /// Backends that work here but have no counter for this domain.
        public var missingFrom: [BackendKind]
        /// (most − least) / mean of the readings' watts; nil with fewer than two readings.
        public var disagreement: Double?
        /// Known causes of a difference, for a flagged row.
        public var causes: [String]
        /// Disagreeing by more than ``BackendComparison/flagAbove``, or missing from a backend.
        public var flagged: Bool
    }

    /// Disagreements above this are flagged (0.5 %).
    public static let flagAbove = 0.005

    public var seconds: Double
    /// The backends read, in order of preference.
    public var compared: [BackendKind]
    public var unavailable: [BackendUnavailable]
    public var rows: [Row]

    /// The largest disagreement of any domain.
    public var worst: Double? { rows.compactMap(\.disagreement).max() }

    /// Opens every backend, reads them all every `step` (often enough for any counter's wrap) for
    /// `duration`, and compares each domain's energy over that time. `sleep` waits one step (tests
    /// advance fake counters in it); the elapsed time is the longer of the clock's and the steps' sum.
    public static func run(
        selector: BackendSelector,
        duration: Duration,
        step: Duration = .milliseconds(100),
        sleep: (Duration) async -> Void = { try? await Task.sleep(for: $0) }
    ) async -> BackendComparison {
        var meters: [(BackendKind, EnergyMeter)] = []
        var unavailable: [BackendUnavailable] = []
        for kind in BackendPreference.auto.order {
            switch selector.open(kind) {
            case .success(let backend):
                meters.append((kind, EnergyMeter(backend: backend, stuckAfter: duration + .seconds(1), retryAfter: .zero, logger: selector.logger)))
            case .failure(let why): unavailable.append(why)
            }
        }
        let start = ContinuousClock.now
        var simulated = Duration.zero
        var problems: [BackendKind: [Domain: String]] = [:]
        func readAll(_ now: Duration) {
            for (kind, meter) in meters {
                meter.read(now: now)
                for (i, status) in meter.statuses.enumerated() {
                    switch status {
                    case .glitch(let why): problems[kind, default: [:]][meter.domains[i]] = "glitch: \(why)"
                    case .failed(let why): problems[kind, default: [:]][meter.domains[i]] = problems[kind]?[meter.domains[i]] ?? "read failed: \(why)"
                    default: break
                    }
                }
            }
        }
        readAll(.zero)
        let first = meters.map { (domains: $0.1.domains, totals: $0.1.totals) }
        while simulated < duration {
            let wait = min(step, duration - simulated)
            await sleep(wait)
            simulated += wait
            readAll(max(ContinuousClock.now - start, simulated))
        }
        let seconds = max(ContinuousClock.now - start, simulated).seconds
        var domains: [Domain] = []
        for (_, meter) in meters { for d in meter.domains where !domains.contains(d) { domains.append(d) } }
        let identity = selector.facts.identity
        let rows = domains.sorted().map { domain -> Row in
            var readings: [Reading] = []
            var missing: [BackendKind] = []
            for (m, (kind, meter)) in meters.enumerated() {
                guard let i = meter.index(of: domain) else {
                    missing.append(kind)
                    continue
                }
                let before = first[m].domains.firstIndex(of: domain).map { first[m].totals[$0] } ?? 0
                let energy = meter.totals[i] &- before
                readings.append(
                    Reading(
                        backend: kind, microjoules: energy, watts: seconds > 0 ? Double(energy) / 1e6 / seconds : 0, problem: problems[kind]?[domain])
                )
            }
            let watts = readings.map(\.watts)
            var disagreement: Double?
            if watts.count >= 2, let most = watts.max(), let least = watts.min() {
                let mean = watts.reduce(0, +) / Double(watts.count)
                disagreement = mean > 0 ? (most - least) / mean : 0
            }
            let flagged = (disagreement ?? 0) > flagAbove || !missing.isEmpty || readings.contains { $0.problem != nil }
            return Row(
                domain: domain, readings: readings, missingFrom: missing, disagreement: disagreement,
                causes: flagged ? causes(domain, readings, missing: missing, identity: identity, seconds: seconds) : [], flagged: flagged)
        }
        return BackendComparison(seconds: seconds, compared: meters.map(\.0), unavailable: unavailable, rows: rows)
    }

    /// What is known to make backends differ on this domain.
    static func causes(_ domain: Domain, _ readings: [Reading], missing: [BackendKind], identity: CPUIdentity?, seconds: Double) -> [String] {
        var causes: [String] = []
        for kind in missing {
            let why =
                switch kind {
                case .perf: "the kernel's perf RAPL driver has no event for it"
                case .msr: "no energy MSR is known or readable for it on this CPU"
                case .sysfs: "the powercap driver has no zone for it"
                case .simulated: "it is simulated"
                }
            causes.append("a domain one backend lacks: \(kind) does not read it (\(why))")
        }
        for reading in readings { if let problem = reading.problem { causes.append("\(reading.backend): \(problem)") } }
        guard readings.count >= 2 else { return causes }
        if domain.kind == .dram, let cpu = identity, cpu.vendor == .intel, cpu.family == 6, MSRBackend.fixedDRAMUnitModels.contains(cpu.model) {
            causes.append(
                "DRAM energy unit: on this Intel server model (0x\(String(cpu.model, radix: 16))) DRAM counts in 2^-16 J (15.3 µJ), not the unit register's; "
                    + "a kernel or tool without that quirk is off by a constant factor (this exporter's MSR backend applies it)")
        }
        if domain.kind == .core, let cpu = identity, cpu.vendor == .amd || cpu.vendor == .hygon {
            causes.append(
                "AMD per-core sums: the MSR backend adds the per-core energy MSRs of one thread per core; the kernel's core domain (perf, sysfs) may be per core or absent, so sums differ"
            )
        }
        if seconds < 2 {
            causes.append(
                "a short run: RAPL updates about every millisecond, so reads microseconds apart can differ by one update; use --duration 5 or more")
        }
        if readings.allSatisfy({ $0.watts < 0.05 }) {
            causes.append(
                "the counters barely moved (idle domain or a VM's placeholder counters): a relative difference of tiny numbers means little")
        }
        if causes.isEmpty { causes.append("no known cause: compare the units and wrap ranges in 'rapl-exporter probe'") }
        return causes
    }
}
