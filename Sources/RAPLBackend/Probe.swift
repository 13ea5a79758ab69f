import Support

/// `rapl-exporter probe`: what each backend can read here, why not, and the power of each domain over
/// a short interval.
public struct ProbeReport: Sendable {
    public struct DomainResult: Sendable {
        public var domain: Domain
        public var unit: String
        public var wrapRange: String
        public var energyMicrojoules: UInt64
        public var watts: Double
        public var status: DomainStatus
    }

    public struct BackendResult: Sendable {
        public var kind: BackendKind
        /// nil when available.
        public var unavailable: BackendUnavailable?
        public var domains: [DomainResult]
        public var notes: [String]
        /// Available, and a counter moved during the interval (``BackendSelector/moved(_:_:)``, the same
        /// test `run` makes).
        public var moved: Bool
    }

    public var interval: Duration
    public var capabilities: CapabilitySet
    public var perfParanoid: Int?
    public var backends: [BackendResult]
    /// Power limits and TDP as read at the start, and the throttle counters over the interval.
    public var limits = PowerLimitSnapshot()
    /// Where the limits come from (`sysfs`, `msr`), nil when none is readable.
    public var limitsSource: String?
    /// Per item not readable here: what, and why.
    public var limitsAbsent: [String] = []

    /// The backend `--backend auto` would choose: the first available one with a moving counter,
    /// else the first available one.
    public var autoChoice: BackendKind? {
        BackendSelector.autoChoice(backends.filter(\.kind.measures).map { ($0.kind, $0.unavailable == nil, $0.moved) })
    }

    public var anyAvailable: Bool { backends.contains { $0.unavailable == nil } }

    /// Opens every backend (or the one asked for), reads it, waits `interval`, reads again.
    public static func run(
        selector: BackendSelector,
        preference: BackendPreference,
        interval: Duration,
        sleep: (Duration) async -> Void = { try? await Task.sleep(for: $0) }
    ) async -> ProbeReport {
        var opened: [(BackendKind, Result<any EnergyBackend, BackendUnavailable>)] = []
        for kind in preference.order { opened.append((kind, selector.open(kind))) }
        let limits = PowerLimitReader(paths: selector.paths, facts: selector.facts, leastPrivilege: selector.leastPrivilege, logger: selector.logger)
        _ = limits.read(now: .zero)
        var meters: [BackendKind: EnergyMeter] = [:]
        var snapshots: [BackendKind: [UInt64?]] = [:]
        let start = ContinuousClock.now
        for case (let kind, .success(let backend)) in opened {
            let meter = EnergyMeter(backend: backend, stuckAfter: interval, retryAfter: .zero, logger: selector.logger)
            snapshots[kind] = BackendSelector.snapshot(backend)
            meter.read(now: .zero)
            meters[kind] = meter
        }
        await sleep(interval)
        let end = ContinuousClock.now
        let simulated = start + interval
        let seconds = (max(end, simulated) - start).seconds
        var results: [BackendResult] = []
        for (kind, result) in opened {
            switch result {
            case .failure(let why):
                results.append(BackendResult(kind: kind, unavailable: why, domains: [], notes: [], moved: false))
            case .success(let backend):
                let meter = meters[kind]!
                let before = meter.totals
                let beforeDomains = meter.domains
                meter.read(now: max(end, simulated) - start)
                var domains: [DomainResult] = []
                for (i, domain) in meter.domains.enumerated() {
                    let b = beforeDomains.firstIndex(of: domain).map { before[$0] } ?? 0
                    let energy = meter.totals[i] &- b
                    let specs = backend.counters.filter { $0.domain == domain }
                    domains.append(
                        DomainResult(
                            domain: domain,
                            unit: specs.first.map { "\($0.unit)" } ?? "",
                            wrapRange: Self.wrapRange(backend.kind, specs),
                            energyMicrojoules: energy,
                            watts: seconds > 0 ? Double(energy) / 1e6 / seconds : 0,
                            status: meter.statuses[i]
                        ))
                }
                let moved = BackendSelector.moved(snapshots[kind] ?? [], BackendSelector.snapshot(backend))
                results.append(BackendResult(kind: kind, unavailable: nil, domains: domains, notes: backend.notes, moved: moved))
            }
        }
        var report = ProbeReport(
            interval: interval,
            capabilities: selector.facts.capabilities,
            perfParanoid: selector.facts.perfParanoid,
            backends: results
        )
        report.limits = limits.read(now: max(end, simulated) - start)
        report.limitsSource = limits.limitsSource
        report.limitsAbsent = limits.absent
        return report
    }

    private static func wrapRange(_ kind: BackendKind, _ specs: [CounterSpec]) -> String {
        switch kind {
        case .perf: "2^64 counts"
        case .msr: "2^32 counts = \(formatted(Double(UInt64(1) << 32) * (specs.first?.unit.microjoulesPerCount ?? 0) / 1e6, 0)) J"
        case .sysfs: "max_energy_range_uj"
        case .simulated: "2^64 µJ (simulated)"
        }
    }

}
