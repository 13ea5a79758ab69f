import RAPLBackend

/// Where remote write goes: parsed from `REMOTE_WRITE_URL` without Foundation.
public struct RemoteWriteEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var tls: Bool
    public var host: String
    public var port: Int
    /// Path and query, starting with "/".
    public var target: String

    /// Parses `http(s)://host[:port][/path][?query]`; IPv6 hosts in brackets. Nil for anything else
    /// (other schemes, user info, empty host, a bad port).
    public init?(_ text: String) {
        let lower = text.lowercased()
        let rest: Substring
        if lower.hasPrefix("http://") {
            tls = false
            rest = text.dropFirst(7)
        } else if lower.hasPrefix("https://") {
            tls = true
            rest = text.dropFirst(8)
        } else {
            return nil
        }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var path = String(rest[authorityEnd...])
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        guard !authority.isEmpty, !authority.contains("@"), !authority.contains(" ") else { return nil }
        var hostPart: Substring
        var portPart: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portPart = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        } else {
            hostPart = authority
        }
        guard !hostPart.isEmpty else { return nil }
        host = String(hostPart)
        if let portPart {
            guard let p = Int(portPart), (1...65535).contains(p) else { return nil }
            port = p
        } else {
            port = tls ? 443 : 80
        }
        target = path
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(tls ? "https" : "http")://\(h):\(port)\(target)"
    }

    /// The Host header value.
    var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return (tls && port == 443) || (!tls && port == 80) ? h : "\(h):\(port)"
    }
}

/// Exponential backoff with jitter, as a value (after swift-otel's RetryPolicy).
public struct RetryPolicy: Sendable, Equatable {
    public var initialBackoff: Duration
    public var maximumBackoff: Duration
    public var multiplier: Double
    /// ± this fraction of the delay, drawn at random.
    public var jitter: Double
    /// The longest `Retry-After` honoured; longer ones are shortened to this.
    public var maximumRetryAfter: Duration

    public init(
        initialBackoff: Duration = .milliseconds(500),
        maximumBackoff: Duration = .seconds(30),
        multiplier: Double = 2,
        jitter: Double = 0.2,
        maximumRetryAfter: Duration = .seconds(300)
    ) {
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
        self.multiplier = multiplier
        self.jitter = jitter
        self.maximumRetryAfter = maximumRetryAfter
    }

    /// The wait before retry number `attempt` (1 = the first retry). `retryAfter`, when the receiver
    /// sent one, replaces the computed backoff (capped at `maximumRetryAfter`, never jittered).
    /// `random` is uniform in [0, 1).
    public func delay(attempt: Int, retryAfter: Duration?, random: Double) -> Duration {
        if let retryAfter {
            return min(max(retryAfter, .zero), maximumRetryAfter)
        }
        var base = initialBackoff.seconds
        for _ in 1..<max(attempt, 1) {
            base *= multiplier
            if base >= maximumBackoff.seconds { break }
        }
        base = min(base, maximumBackoff.seconds)
        let factor = 1 + jitter * (2 * random - 1)
        return Duration(secondsValue: base * factor)
    }
}

/// Everything the remote writer needs.
public struct RemoteWriteSettings: Sendable {
    public var endpoint: RemoteWriteEndpoint
    public var pushInterval: Duration
    /// `MAX_RETRY_BATCHES`: at most this many batches wait; beyond it the oldest is dropped.
    public var maxQueuedBatches: Int
    /// A batch larger than this is split into several requests.
    public var maxSamplesPerRequest: Int
    /// Samples older than this are dropped instead of retried.
    public var maxSampleAge: Duration
    public var requestTimeout: Duration
    /// How long shutdown may spend pushing what is pending.
    public var shutdownTimeout: Duration
    public var retry: RetryPolicy
    public var labels: SeriesLabels

    public init(
        endpoint: RemoteWriteEndpoint,
        pushInterval: Duration = .seconds(4),
        maxQueuedBatches: Int = 5,
        maxSamplesPerRequest: Int = 2000,
        maxSampleAge: Duration = .seconds(1800),
        requestTimeout: Duration = .seconds(10),
        shutdownTimeout: Duration = .seconds(10),
        retry: RetryPolicy = RetryPolicy(),
        labels: SeriesLabels = SeriesLabels()
    ) {
        self.endpoint = endpoint
        self.pushInterval = pushInterval
        self.maxQueuedBatches = maxQueuedBatches
        self.maxSamplesPerRequest = maxSamplesPerRequest
        self.maxSampleAge = maxSampleAge
        self.requestTimeout = requestTimeout
        self.shutdownTimeout = shutdownTimeout
        self.retry = retry
        self.labels = labels
    }
}

/// How series are named and labelled.
public struct SeriesLabels: Sendable {
    /// `METRIC_DEFAULT`: the per-window energy series.
    public var metricName: String
    /// `SERVICE_LABEL`: the `source` label.
    public var source: String
    public var nameStyle: NameStyle
    /// Also write a cumulative `rapl_energy_joules_total` counter per domain.
    public var cumulative: Bool

    public static let cumulativeMetricName = "rapl_energy_joules_total"

    public init(metricName: String = "pyjoules_remote_write_energy_uj", source: String = "cpu-pyjoules", nameStyle: NameStyle = .seed, cumulative: Bool = false) {
        self.metricName = metricName
        self.source = source
        self.nameStyle = nameStyle
        self.cumulative = cumulative
    }
}
