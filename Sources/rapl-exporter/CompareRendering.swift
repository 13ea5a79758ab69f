import RAPLBackend
import Support

/// How `rapl-exporter compare` shows its report: a table for people, JSON for scripts.
extension BackendComparison {
    func text(style: NameStyle, tolerance: Double, exceeded: Bool) -> String {
        var out = ""
        guard !compared.isEmpty else {
            out += "no backend can read RAPL counters here: nothing to compare\n"
            for why in unavailable { out += "  \(why.backend): \(why.reason)\n    fix: \(why.fix)\n" }
            return out
        }
        out += "read \(compared.map(\.rawValue).joined(separator: ", ")) side by side for \(formatted(seconds, 1)) s\n"
        for why in unavailable { out += "not compared: \(why.backend): \(why.reason)\n" }
        if compared.count == 1 { out += "only \(compared[0]) works here: there is nothing to compare it with (its figures are below)\n" }
        out += "\n"
        let nameWidth = max(9, rows.map { Self.name($0.domain, style).count }.max() ?? 0)
        var header = Self.pad("domain", nameWidth) + "  "
        for kind in compared { header += Self.pad("\(kind) W", 12, right: true) }
        header += "  disagreement"
        out += header + "\n"
        for row in rows {
            var line = Self.pad(Self.name(row.domain, style), nameWidth) + "  "
            for kind in compared {
                let watts = row.readings.first { $0.backend == kind }.map { formatted($0.watts, 3) } ?? "—"
                line += Self.pad(watts, 12, right: true)
            }
            line += "  " + (row.disagreement.map { "\(formatted($0 * 100, 2)) %" } ?? "—")
            if row.flagged { line += "  FLAGGED" }
            out += line + "\n"
            for cause in row.causes { out += "    cause: \(cause)\n" }
        }
        out += "\n"
        if let worst {
            out +=
                exceeded
                ? "backends disagree by up to \(formatted(worst * 100, 2)) %: more than the tolerance of \(formatted(tolerance, 2)) %\n"
                : "backends agree within \(formatted(tolerance, 2)) % (largest difference \(formatted(worst * 100, 2)) %)\n"
        }
        return out
    }

    func json(style: NameStyle, tolerance: Double, exceeded: Bool) -> JSONValue {
        .object([
            ("duration_s", .double(seconds)),
            ("backends", .array(compared.map { .string($0.rawValue) })),
            (
                "unavailable",
                .array(
                    unavailable.map {
                        .object([("backend", .string($0.backend.rawValue)), ("reason", .string($0.reason)), ("fix", .string($0.fix))])
                    })
            ),
            (
                "domains",
                .array(
                    rows.map { row in
                        .object([
                            ("component", .string(row.domain.component(style))), ("socket", .int(Int64(row.domain.socket))),
                            ("die", row.domain.die.map { .int(Int64($0)) } ?? .null),
                            (
                                "readings",
                                .array(
                                    row.readings.map { r in
                                        .object([
                                            ("backend", .string(r.backend.rawValue)), ("power_w", .double(r.watts)),
                                            ("energy_uj", .uint(r.microjoules)),
                                            ("problem", r.problem.map { .string($0) } ?? .null),
                                        ])
                                    })
                            ),
                            ("missing_from", .array(row.missingFrom.map { .string($0.rawValue) })),
                            ("disagreement_pct", row.disagreement.map { .double($0 * 100) } ?? .null),
                            ("flagged", .bool(row.flagged)),
                            ("causes", .array(row.causes.map { .string($0) })),
                        ])
                    })
            ),
            ("worst_pct", worst.map { .double($0 * 100) } ?? .null),
            ("tolerance_pct", .double(tolerance)),
            ("exceeded", .bool(exceeded)),
        ])
    }

    static func name(_ domain: Domain, _ style: NameStyle) -> String {
        "\(domain.component(style)) s\(domain.socket)" + (domain.die.map { " d\($0)" } ?? "")
    }

    static func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - text.count))
        return right ? fill + text : text + fill
    }
}
