import RAPLBackend
import Support
import Synchronization

/// `--output stdout`: one JSON line per window in the seed's pyJoules dict form:
/// `{"timestamp": "<ISO-8601 window start>", "duration": <s>, "package-0": <µJ>, "core": <µJ>, …}`.
///
/// Keys are component names. Where one name occurs on several sockets (or dies), the key carries the
/// place: `core@1` is socket 1's `core`, `core@0.1` die 1 of socket 0. Unreadable domains are left out
/// of that line (their energy appears in the next line where they are readable).
///
/// A line that cannot be written (stdout closed, a full disk, a reader gone) is not silently lost: the
/// first failure is logged with its reason and reported through `onFailure` (the daemon then shuts
/// down and exits 1); ``failure`` keeps it.
public final class StdoutSink: WindowSink {
    public let style: NameStyle
    /// The source is ``BackendKind/simulated``: every line says `"simulated": true`.
    public let simulated: Bool
    private let onFailure: @Sendable (String) -> Void
    private let failed = Mutex<String?>(nil)
    private let write: @Sendable (String) -> CInt

    public init(style: NameStyle, simulated: Bool = false, onFailure: @escaping @Sendable (String) -> Void = { _ in }) {
        self.style = style
        self.simulated = simulated
        self.onFailure = onFailure
        self.write = { StandardOutput.write($0) }
    }

    init(style: NameStyle, simulated: Bool = false, write: @escaping @Sendable (String) -> CInt, onFailure: @escaping @Sendable (String) -> Void) {
        self.style = style
        self.simulated = simulated
        self.onFailure = onFailure
        self.write = write
    }

    /// Why writing stopped working, once it has.
    public var failure: String? { failed.withLock { $0 } }

    public func accept(_ window: borrowing EnergyWindow) {
        let code = write(line(window) + "\n")
        guard code != 0 else { return }
        let first = failed.withLock { state -> String? in
            guard state == nil else { return nil }
            state = "cannot write to standard output: \(StandardError.describe(errno: code)); windows are being lost"
            return state
        }
        if let first {
            StandardError.write("rapl-exporter: \(first)\n")
            onFailure(first)
        }
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
        if simulated { fields.append(("simulated", .bool(true))) }
        return JSONValue.object(fields).serialized()
    }
}
