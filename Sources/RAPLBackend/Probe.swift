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

    /// The backend `--backend auto` would choose: the first available one with a moving counter,
    /// else the first available one.
    public var autoChoice: BackendKind? {
        BackendSelector.autoChoice(backends.map { ($0.kind, $0.unavailable == nil, $0.moved) })
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
        return ProbeReport(
            interval: interval,
            capabilities: selector.facts.capabilities,
            perfParanoid: selector.facts.perfParanoid,
            backends: results
        )
    }

    private static func wrapRange(_ kind: BackendKind, _ specs: [CounterSpec]) -> String {
        switch kind {
        case .perf: "2^64 counts"
        case .msr: "2^32 counts = \(formatted(Double(UInt64(1) << 32) * (specs.first?.unit.microjoulesPerCount ?? 0) / 1e6, 0)) J"
        case .sysfs: "max_energy_range_uj"
        }
    }

    // MARK: output

    public func text(style: NameStyle = .seed) -> String {
        var out = "capabilities: \(capabilities); kernel.perf_event_paranoid: \(perfParanoid.map(String.init) ?? "unknown")\n"
        for backend in backends {
            out += "\n"
            if let why = backend.unavailable {
                out += "backend \(backend.kind): unavailable\n  why: \(why.reason)\n  fix: \(why.fix)\n"
                continue
            }
            out += "backend \(backend.kind): available\n"
            for domain in backend.domains {
                let name = domain.domain.component(style)
                let die = domain.domain.die.map { " die \($0)" } ?? ""
                out += "  \(name) (socket \(domain.domain.socket)\(die)): "
                switch domain.status {
                case .ok: out += "\(formatted(domain.watts, 3)) W"
                case .stuck: out += "STUCK: did not change in \(interval) (reads as 0 W, probably not real)"
                case .failed(let why): out += "ERROR: \(why)"
                case .glitch(let why): out += "GLITCH: \(why) (not counted as energy)"
                }
                out += "  [unit \(domain.unit), wraps at \(domain.wrapRange)]\n"
            }
            for note in backend.notes { out += "  note: \(note)\n" }
        }
        out += "\n"
        if let choice = autoChoice {
            out += "auto would choose: \(choice)\n"
        } else {
            out += "no backend can read RAPL counters here; see the fixes above and docs/troubleshooting.md\n"
        }
        return out
    }

    public func json(style: NameStyle = .seed) -> JSONValue {
        .object([
            ("interval_s", .double(interval.seconds)),
            ("capabilities", .string(capabilities.description)),
            ("perf_event_paranoid", perfParanoid.map { .int(Int64($0)) } ?? .null),
            ("auto_choice", autoChoice.map { .string($0.rawValue) } ?? .null),
            (
                "backends",
                .array(
                    backends.map { backend in
                        var fields: [(String, JSONValue)] = [
                            ("backend", .string(backend.kind.rawValue)),
                            ("available", .bool(backend.unavailable == nil)),
                        ]
                        if let why = backend.unavailable {
                            fields.append(("reason", .string(why.reason)))
                            fields.append(("fix", .string(why.fix)))
                        }
                        fields.append(
                            (
                                "domains",
                                .array(
                                    backend.domains.map { d in
                                        var status: [(String, JSONValue)] = []
                                        switch d.status {
                                        case .ok: status = [("status", .string("ok"))]
                                        case .stuck: status = [("status", .string("stuck"))]
                                        case .failed(let why): status = [("status", .string("error")), ("error", .string(why))]
                                        case .glitch(let why): status = [("status", .string("glitch")), ("error", .string(why))]
                                        }
                                        return .object(
                                            [
                                                ("component", .string(d.domain.component(style))),
                                                ("socket", .int(Int64(d.domain.socket))),
                                                ("die", d.domain.die.map { .int(Int64($0)) } ?? .null),
                                                ("unit", .string(d.unit)),
                                                ("wrap_range", .string(d.wrapRange)),
                                                ("energy_uj", .uint(d.energyMicrojoules)),
                                                ("power_w", .double(d.watts)),
                                            ] + status)
                                    })
                            ))
                        fields.append(("notes", .array(backend.notes.map { .string($0) })))
                        return .object(fields)
                    })
            ),
        ])
    }
}
