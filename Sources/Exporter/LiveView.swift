import RAPLBackend
import Support

/// What `rapl-exporter top` shows: per domain the watts of the last refresh, min / avg / max since the
/// start (or the last backend switch), a history sparkline, the domain's long-term power limit and the
/// share of the last refresh it was throttled. Only figures: the terminal I/O is the CLI's.
public struct LiveView: Sendable {
    public struct Row: Sendable, Equatable {
        public var domain: Domain
        /// Watts over the last refresh; nil when it gave no energy (a failed read or a glitch).
        public var now: Double?
        public var min = Double.infinity
        public var max = 0.0
        public var sum = 0.0
        public var count = 0
        /// The last refreshes' watts, oldest first (at most ``LiveView/historyLength``).
        public var history: [Double] = []

        public var average: Double? { count > 0 ? sum / Double(count) : nil }
    }

    /// Refreshes kept for the sparkline.
    public static let historyLength = 120

    public var backend: BackendKind
    /// Every backend `b` can switch to, in order.
    public var backends: [BackendKind]
    public var style: NameStyle
    public private(set) var rows: [Row] = []
    public private(set) var refreshes = 0
    public private(set) var seconds = 0.0
    /// A line for the status bar (a backend switch, a problem).
    public var status: String?
    private var limits: PowerLimitSnapshot?
    private var throttleShare: [Domain: Double] = [:]

    public init(backend: BackendKind, backends: [BackendKind], style: NameStyle = .seed) {
        self.backend = backend
        self.backends = backends
        self.style = style
    }

    /// Takes one refresh: the energy (µJ, nil for none) of each domain over `seconds`.
    public mutating func update(domains: [Domain], energy: [UInt64?], seconds elapsed: Double) {
        refreshes += 1
        seconds += elapsed
        for (i, domain) in domains.enumerated() {
            var row = rows.first { $0.domain == domain } ?? Row(domain: domain)
            if let e = energy[i], elapsed > 0 {
                let watts = Double(e) / 1e6 / elapsed
                row.now = watts
                row.min = Swift.min(row.min, watts)
                row.max = Swift.max(row.max, watts)
                row.sum += watts
                row.count += 1
                row.history.append(watts)
                if row.history.count > Self.historyLength { row.history.removeFirst(row.history.count - Self.historyLength) }
            } else {
                row.now = nil
            }
            if let j = rows.firstIndex(where: { $0.domain == domain }) { rows[j] = row } else { rows.append(row) }
        }
        rows.sort { $0.domain < $1.domain }
    }

    /// Takes a read of the limits; the throttled share is the change of each throttle counter since
    /// the previous read over `seconds`.
    public mutating func update(limits snapshot: PowerLimitSnapshot, seconds elapsed: Double) {
        if let previous = limits, elapsed > 0 {
            for t in snapshot.throttledSeconds {
                guard let before = previous.throttledSeconds.first(where: { $0.domain == t.domain }) else { continue }
                throttleShare[t.domain] = Swift.max(0, t.value - before.value) / elapsed
            }
        }
        limits = snapshot
    }

    /// Starts over on another backend.
    public mutating func switchTo(_ kind: BackendKind) {
        backend = kind
        rows = []
        refreshes = 0
        seconds = 0
        status = "switched to \(kind): figures restart"
    }

    /// The next backend `b` switches to (nil when only one works).
    public var nextBackend: BackendKind? {
        guard backends.count > 1, let i = backends.firstIndex(of: backend) else { return nil }
        return backends[(i + 1) % backends.count]
    }

    // MARK: rendering

    static let sparks: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// `values` as a sparkline of at most `width` characters (the newest), scaled to their own range.
    static func sparkline(_ values: [Double], width: Int) -> String {
        let shown = values.suffix(Swift.max(0, width))
        guard let top = shown.max(), let bottom = shown.min() else { return "" }
        let span = top - bottom
        return String(
            shown.map { v in
                span > 0 ? sparks[Swift.min(sparks.count - 1, Int((v - bottom) / span * Double(sparks.count - 1) + 0.5))] : sparks[0]
            })
    }

    static func watts(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "—" }
        return formatted(value, value >= 100 ? 1 : 2)
    }

    static func fit(_ text: String, _ width: Int, right: Bool = false) -> String {
        if text.count > width { return String(text.prefix(width)) }
        let fill = String(repeating: " ", count: width - text.count)
        return right ? fill + text : text + fill
    }

    /// The screen: at most `height` lines, each at most `width` characters. With `color`, the header
    /// is inverse and throttling is red (ANSI SGR); without (NO_COLOR), plain text.
    public func frame(width: Int, height: Int, color: Bool) -> [String] {
        let width = Swift.max(40, width)
        let keys = nextBackend.map { "q quit · b → \($0)" } ?? "q quit"
        let title = "rapl-exporter top — \(backend) — \(formatted(seconds, 0)) s — \(keys)"
        let nameWidth = 13
        // name, socket, now, min, avg, max, then history, limit, throttled.
        let fixed = nameWidth + 3 + 8 * 4 + 9 + 7
        let historyWidth = Swift.max(4, width - fixed - 1)
        var lines: [String] = []
        func styled(_ text: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
        lines.append(styled(Self.fit(title, width), "7"))
        let header =
            Self.fit("component", nameWidth) + Self.fit("s", 3, right: true) + Self.fit("W now", 8, right: true) + Self.fit("min", 8, right: true)
            + Self.fit("avg", 8, right: true) + Self.fit("max", 8, right: true) + " " + Self.fit("history", historyWidth)
            + Self.fit("PL1 W", 9, right: true) + Self.fit("thr", 7, right: true)
        lines.append(styled(Self.fit(header, width), "1"))
        let room = Swift.max(0, height - 4)
        for row in rows.prefix(room) {
            let pl1 = limits?.limits.first { $0.domain == row.domain && $0.constraint == "long_term" }
            let share = throttleShare[row.domain]
            var line =
                Self.fit(row.domain.component(style), nameWidth) + Self.fit(String(row.domain.socket), 3, right: true)
                + Self.fit(Self.watts(row.now), 8, right: true) + Self.fit(Self.watts(row.count > 0 ? row.min : nil), 8, right: true)
                + Self.fit(Self.watts(row.average), 8, right: true) + Self.fit(Self.watts(row.count > 0 ? row.max : nil), 8, right: true) + " "
                + Self.fit(Self.sparkline(row.history, width: historyWidth - 1), historyWidth)
                + Self.fit(pl1.map { formatted($0.watts, 0) + ($0.enabled == false ? "*" : "") } ?? "—", 9, right: true)
            let thr = Self.fit(share.map { formatted($0 * 100, 1) + "%" } ?? "—", 7, right: true)
            line = Self.fit(line, width - 7)
            lines.append(line + ((share ?? 0) > 0 ? styled(thr, "31") : thr))
        }
        if rows.count > room { lines.append(Self.fit("… \(rows.count - room) more domains (a taller terminal shows them)", width)) }
        let total = rows.filter { $0.domain.kind == .package }.compactMap(\.now).reduce(0, +)
        var footer = "packages \(Self.watts(total)) W"
        if let status { footer += " · \(status)" }
        if limits?.limits.contains(where: { $0.enabled == false }) == true { footer += " · * limit disabled" }
        while lines.count < height - 1 { lines.append("") }
        lines.append(Self.fit(footer, width))
        return Array(lines.prefix(height))
    }

    /// One line per refresh, for a stdout that is not a terminal: the time since the start, the backend,
    /// and each domain's watts.
    public func line() -> String {
        let domains = rows.map { "\($0.domain.component(style))/\($0.domain.socket)=\(Self.watts($0.now))W" }
        let throttled = throttleShare.sorted { $0.key < $1.key }.map {
            "\($0.key.component(style))/\($0.key.socket)=\(formatted($0.value * 100, 1))%"
        }
        return "t=\(formatted(seconds, 1))s backend=\(backend) " + domains.joined(separator: " ")
            + (throttled.isEmpty ? "" : " throttled " + throttled.joined(separator: " "))
    }
}
