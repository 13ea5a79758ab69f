import RAPLBackend
import Support

/// How `rapl-exporter probe` shows its report: text for people, JSON for scripts. The report itself
/// (what was opened and read) is RAPLBackend's `ProbeReport`.
extension ProbeReport {
    func text(style: NameStyle = .seed) -> String {
        var out = "capabilities: \(capabilities); kernel.perf_event_paranoid: \(perfParanoid.map(String.init) ?? "unknown")\n"
        for backend in backends {
            out += "\n"
            if let why = backend.unavailable {
                out += "backend \(backend.kind): unavailable\n  why: \(why.reason)\n  fix: \(why.fix)\n"
                continue
            }
            out += "backend \(backend.kind): available\n"
            if !backend.kind.measures { out += "  WARNING: \(SimulatedBackend.warning)\n" }
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
        out += "\npower limits and throttling (\(limitsSource ?? "no source")):\n"
        for l in limits.limits {
            out += "  \(l.domain.component(style)) (socket \(l.domain.socket)) \(l.constraint): \(formatted(l.watts, 1)) W"
            if let w = l.timeWindowSeconds { out += " over \(formatted(w, w < 1 ? 4 : 2)) s" }
            let flags = [l.enabled.map { $0 ? "enabled" : "disabled" }, l.clamped == true ? "clamp" : nil, l.locked == true ? "locked" : nil]
            out += flags.compactMap { $0 }.isEmpty ? "\n" : " [\(flags.compactMap { $0 }.joined(separator: ", "))]\n"
        }
        for t in limits.tdp { out += "  \(t.domain.component(style)) (socket \(t.domain.socket)) TDP: \(formatted(t.value, 1)) W\n" }
        for t in limits.throttledSeconds {
            out +=
                "  \(t.domain.component(style)) (socket \(t.domain.socket)) throttled: \(formatted(t.value / interval.seconds * 100, 1)) % of the interval\n"
        }
        for line in limitsAbsent { out += "  absent: \(line)\n" }
        out += "\n"
        if let choice = autoChoice {
            out += "auto would choose: \(choice)\n"
        } else if backends.contains(where: { !$0.kind.measures && $0.unavailable == nil }) {
            out += "auto never chooses simulated: it is not a measurement\n"
        } else {
            out += "no backend can read RAPL counters here; see the fixes above and docs/troubleshooting.md\n"
            if !backends.contains(where: { !$0.kind.measures }) {
                out += "to try the pipeline anyway: --backend simulated (made-up energy from CPU time, marked as such; not a measurement)\n"
            }
        }
        return out
    }

    func json(style: NameStyle = .seed) -> JSONValue {
        .object([
            ("interval_s", .double(interval.seconds)),
            ("capabilities", .string(capabilities.description)),
            ("perf_event_paranoid", perfParanoid.map { .int(Int64($0)) } ?? .null),
            ("auto_choice", autoChoice.map { .string($0.rawValue) } ?? .null),
            (
                "power_limits",
                .object([
                    ("source", limitsSource.map { .string($0) } ?? .null),
                    (
                        "limits",
                        .array(
                            limits.limits.map { l in
                                .object([
                                    ("component", .string(l.domain.component(style))), ("socket", .int(Int64(l.domain.socket))),
                                    ("constraint", .string(l.constraint)), ("watts", .double(l.watts)),
                                    ("time_window_s", l.timeWindowSeconds.map { .double($0) } ?? .null),
                                    ("enabled", l.enabled.map { .bool($0) } ?? .null), ("clamp", l.clamped.map { .bool($0) } ?? .null),
                                    ("locked", l.locked.map { .bool($0) } ?? .null),
                                ])
                            })
                    ),
                    (
                        "tdp",
                        .array(limits.tdp.map { .object([("component", .string($0.domain.component(style))), ("watts", .double($0.value))]) })
                    ),
                    (
                        "throttled_share",
                        .array(
                            limits.throttledSeconds.map {
                                .object([("component", .string($0.domain.component(style))), ("share", .double($0.value / interval.seconds))])
                            })
                    ),
                    ("absent", .array(limitsAbsent.map { .string($0) })),
                ])
            ),
            (
                "backends",
                .array(
                    backends.map { backend in
                        var fields: [(String, JSONValue)] = [
                            ("backend", .string(backend.kind.rawValue)),
                            ("available", .bool(backend.unavailable == nil)),
                            ("measures", .bool(backend.kind.measures)),
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
