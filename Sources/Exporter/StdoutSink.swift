import RAPLBackend

/// `--output stdout`: one JSON line per window in the seed's pyJoules dict form:
/// `{"timestamp": "<ISO-8601 window start>", "duration": <s>, "package-0": <µJ>, "core": <µJ>, …}`.
///
/// Keys are component names. Where one name occurs on several sockets (or dies), the key carries the
/// place: `core@1` is socket 1's `core`, `core@0.1` die 1 of socket 0. Unreadable domains are left out
/// of that line (their energy appears in the next line where they are readable).
public struct StdoutSink: WindowSink {
    public let style: NameStyle

    public init(style: NameStyle) { self.style = style }

    public func accept(_ window: borrowing EnergyWindow) {
        StandardOutput.write(line(window) + "\n")
    }

    public func line(_ window: borrowing EnergyWindow) -> String {
        var fields: [(String, JSONValue)] = [
            ("timestamp", .string(CivilTime.iso8601(microseconds: window.startMicroseconds))),
            ("duration", .double(window.duration.seconds)),
        ]
        let names = window.domains.map { $0.component(style) }
        for (i, domain) in window.domains.enumerated() {
            guard let energy = window.energy[i] else { continue }
            var key = names[i]
            if names.filter({ $0 == key }).count > 1 {
                key += "@\(domain.socket)" + (domain.die.map { ".\($0)" } ?? "")
            }
            fields.append((key, .uint(energy)))
        }
        return JSONValue.object(fields).serialized()
    }
}
