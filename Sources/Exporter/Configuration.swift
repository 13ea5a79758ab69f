import RAPLBackend
import Support

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
        // Printable ASCII only: a space, CR, LF or any other control character would break the request
        // line (percent-encode what needs it).
        guard text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
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

    /// For logs: the query's values are left out (tokens travel there: `?api_key=…`).
    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(tls ? "https" : "http")://\(h):\(port)\(Self.redactingQuery(target))"
    }

    /// `text` with a password in its user info and the values of its query replaced by `***`, and any
    /// control character escaped: what an error message may echo of a URL the user gave.
    public static func redacted(_ text: String) -> String {
        var t = Substring(text)
        var out = ""
        if let colon = t.firstIndex(of: ":"), t[colon...].hasPrefix("://") {
            let rest = t.index(colon, offsetBy: 3)
            out = String(t[..<rest])
            t = t[rest...]
            let authorityEnd = t.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? t.endIndex
            var authority = t[..<authorityEnd]
            if let at = authority.lastIndex(of: "@") {
                let user = authority[..<at].split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
                out += user.count > 1 ? "\(user[0]):***@" : "\(user[0])@"
                authority = authority[authority.index(after: at)...]
            }
            out += authority
            t = t[authorityEnd...]
        }
        out += redactingQuery(String(t))
        return printable(out)
    }

    static func redactingQuery(_ target: String) -> String {
        guard let q = target.firstIndex(of: "?") else { return target }
        let pairs = target[target.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).map { pair in
            pair.split(separator: "=", maxSplits: 1).first.map { "\($0)=***" } ?? ""
        }
        return target[..<q] + "?" + pairs.joined(separator: "&")
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

/// TLS for https endpoints.
public struct TLSSettings: Sendable, Equatable {
    /// PEM file of the CA(s) to trust instead of the system's.
    public var caFile: String?
    /// Client certificate and key (PEM) for mutual TLS.
    public var certificateFile: String?
    public var keyFile: String?
    /// The name to verify (and send as SNI) instead of the URL's host.
    public var serverName: String?
    /// Skip certificate verification (tests only; logged loudly).
    public var insecureSkipVerify: Bool

    public init(
        caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil, insecureSkipVerify: Bool = false
    ) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
        self.insecureSkipVerify = insecureSkipVerify
    }
}

/// How requests authenticate. Secrets live in files, are read at every request (so rotated tokens
/// are picked up) and never logged.
public enum RemoteWriteAuthorization: Sendable, Equatable {
    case none
    case basic(username: String, passwordFile: String)
    case bearer(tokenFile: String)

    /// The Authorization header value, read from the secret file now. The file must be a regular file
    /// holding one non-empty line (a final newline is ignored): a FIFO, a device, an empty file or one
    /// with CR, LF or NUL inside is refused, the same at start (exit 2) as at every push.
    public func headerValue() throws(SecretFileProblem) -> String? {
        try header()?.value
    }

    /// The header value and the secret in it (token or password), read now.
    func header() throws(SecretFileProblem) -> (value: String, secret: String)? {
        switch self {
        case .none:
            return nil
        case .basic(let username, let passwordFile):
            let password = try SecretFileProblem.readLine(passwordFile, what: "password")
            return ("Basic " + Base64.encode(Array("\(username):\(password)".utf8)), password)
        case .bearer(let tokenFile):
            let token = try SecretFileProblem.readLine(tokenFile, what: "bearer token").trimmingWhitespace()
            return ("Bearer " + token, token)
        }
    }
}

/// Why a secret file cannot be used: it names the file and the problem, never the content.
public struct SecretFileProblem: Error, Sendable, CustomStringConvertible {
    public var description: String

    /// The one line a secret file holds, without its final newline (LF or CRLF).
    static func readLine(_ path: String, what: String) throws(SecretFileProblem) -> String {
        var bytes: ArraySlice<UInt8>
        do {
            bytes = try TextFile.readRegular(path)[...]
        } catch {
            throw SecretFileProblem(description: "cannot read the \(what) file: \(error)")
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard !bytes.isEmpty else { throw SecretFileProblem(description: "the \(what) file \(path) is empty") }
        if bytes.contains(where: { $0 == 0 || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") }) {
            throw SecretFileProblem(
                description: "the \(what) file \(path) holds a NUL, CR or LF byte inside its line: an HTTP header cannot carry it")
        }
        guard let text = String(validating: bytes, as: UTF8.self), !text.unicodeScalars.contains(where: isControl) else {
            throw SecretFileProblem(description: "the \(what) file \(path) is not one line of UTF-8 text without control characters")
        }
        return text
    }

    /// A small UTF-8 text file (a configuration file), read now.
    static func readText(_ path: String, what: String) throws(SecretFileProblem) -> String {
        let bytes: [UInt8]
        do { bytes = try TextFile.readRegular(path) } catch { throw SecretFileProblem(description: "cannot read the \(what): \(error)") }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw SecretFileProblem(description: "the \(what) \(path) is not UTF-8 text")
        }
        return text
    }
}

/// C0 controls but tab, DEL, and C1 controls.
func isControl(_ scalar: Unicode.Scalar) -> Bool {
    (scalar.value < 0x20 && scalar != "\t") || (0x7F...0x9F).contains(scalar.value)
}

enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 2 < bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [table[Int(n >> 18 & 63)], table[Int(n >> 12 & 63)], table[Int(n >> 6 & 63)], table[Int(n & 63)]]
            i += 3
        }
        if i + 1 == bytes.count {
            let n = UInt32(bytes[i]) << 16
            out += [table[Int(n >> 18 & 63)], table[Int(n >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if i + 2 == bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [table[Int(n >> 18 & 63)], table[Int(n >> 12 & 63)], table[Int(n >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of standard base64 (padding required); nil for anything else.
    static func decode(_ text: Substring) -> [UInt8]? {
        let bytes = Array(text.utf8)
        guard bytes.count % 4 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt32? {
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): UInt32(c - UInt8(ascii: "a") + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(c - UInt8(ascii: "0") + 52)
            case UInt8(ascii: "+"): 62
            case UInt8(ascii: "/"): 63
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count / 4 * 3)
        var i = 0
        while i < bytes.count {
            let last = i + 4 == bytes.count
            let padding = last ? (bytes[i + 3] == UInt8(ascii: "=") ? (bytes[i + 2] == UInt8(ascii: "=") ? 2 : 1) : 0) : 0
            var n: UInt32 = 0
            for j in 0..<4 {
                if j >= 4 - padding {
                    n <<= 6
                    continue
                }
                guard let v = value(bytes[i + j]) else { return nil }
                n = n << 6 | v
            }
            out.append(UInt8(n >> 16 & 0xFF))
            if padding < 2 { out.append(UInt8(n >> 8 & 0xFF)) }
            if padding < 1 { out.append(UInt8(n & 0xFF)) }
            i += 4
        }
        return out
    }
}

/// Headers a user may not set: the protocol's own, and Authorization (use the auth options).
public let reservedHeaderNames: Set<String> = [
    "host", "content-length", "content-encoding", "content-type", "x-prometheus-remote-write-version",
    "authorization", "connection", "transfer-encoding",
]

/// Output otlp: how requests are made (the endpoint, TLS and credentials are the connection's).
public struct OTLPSettings: Sendable {
    public var gzip: Bool
    /// The resource's attributes, in order: `service.name`, `host.name`, then `OTEL_RESOURCE_ATTRIBUTES`'.
    public var resource: [(String, String)]

    public init(gzip: Bool = false, resource: [(String, String)] = [("service.name", "rapl-exporter")]) {
        self.gzip = gzip
        self.resource = resource
    }
}

/// `--remote-write-protocol`: which message the writer sends.
public enum RemoteWriteProtocol: String, Sendable, CaseIterable {
    /// Remote write 1.0 only (the seed's, and the default).
    case v1 = "1.0"
    /// Remote write 2.0 only; a receiver that does not take it gets nothing (dropped, counted).
    case v2 = "2.0"
    /// 2.0, falling back to 1.0 — with the same samples — when the receiver shows it does not take 2.0.
    case auto
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
    public var series: SeriesSettings
    /// `--remote-write-protocol`.
    public var wireProtocol: RemoteWriteProtocol = .v1
    /// With `auto`, after falling back to 1.0: when 2.0 is tried again (a receiver may be upgraded).
    public var protocolRetryInterval = Duration.seconds(3600)
    /// Set for output otlp: the writer sends OTLP/HTTP requests to `endpoint` instead of remote write.
    public var otlp: OTLPSettings?

    public init(
        endpoint: RemoteWriteEndpoint,
        pushInterval: Duration = .seconds(4),
        maxQueuedBatches: Int = 5,
        maxSamplesPerRequest: Int = 2000,
        maxSampleAge: Duration = .seconds(1800),
        requestTimeout: Duration = .seconds(10),
        shutdownTimeout: Duration = .seconds(8),
        retry: RetryPolicy = RetryPolicy(),
        series: SeriesSettings = SeriesSettings()
    ) {
        self.endpoint = endpoint
        self.pushInterval = pushInterval
        self.maxQueuedBatches = maxQueuedBatches
        self.maxSamplesPerRequest = maxSamplesPerRequest
        self.maxSampleAge = maxSampleAge
        self.requestTimeout = requestTimeout
        self.shutdownTimeout = shutdownTimeout
        self.retry = retry
        self.series = series
    }
}

/// Which series are written and how they are named and labelled: the energy metric's name, the `source`
/// label, the component naming style, whether the cumulative counter is written, extra labels.
public struct SeriesSettings: Sendable {
    /// `METRIC_DEFAULT`: the per-window energy series.
    public var metricName: String
    /// `SERVICE_LABEL`: the `source` label.
    public var source: String
    public var nameStyle: NameStyle
    /// Also write a cumulative `rapl_energy_joules_total` counter per domain.
    public var cumulative: Bool
    /// Write the per-window series (`metricName`); off for OTLP, which carries the cumulative sum only.
    public var windowEnergy = true
    /// Labels added to every series (`--label node=a`), like Prometheus' external labels: several
    /// hosts pushing to one store need one to keep their series apart.
    public var extra: [(String, String)] = []

    /// Label names the exporter sets itself.
    public static let reservedLabelNames: Set<String> = ["__name__", "component", "socket", "die", "source", "constraint"]

    public static let cumulativeMetricName = "rapl_energy_joules_total"

    public init(
        metricName: String = "pyjoules_remote_write_energy_uj", source: String = "cpu-pyjoules", nameStyle: NameStyle = .seed,
        cumulative: Bool = false
    ) {
        self.metricName = metricName
        self.source = source
        self.nameStyle = nameStyle
        self.cumulative = cumulative
    }
}
