import RAPLBackend
import Support

/// What one POST came back with.
public enum TransportResult: Sendable, Equatable {
    case response(status: Int, headers: [(String, String)], body: [UInt8])
    /// No HTTP response: connection refused or reset, DNS failure, timeout.
    case failure(String)

    public static func == (a: TransportResult, b: TransportResult) -> Bool {
        switch (a, b) {
        case (.response(let s1, let h1, let b1), .response(let s2, let h2, let b2)):
            s1 == s2 && b1 == b2 && h1.map { "\($0.0):\($0.1)" } == h2.map { "\($0.0):\($0.1)" }
        case (.failure(let x), .failure(let y)): x == y
        default: false
        }
    }

    func header(_ name: String) -> String? {
        guard case .response(_, let headers, _) = self else { return nil }
        return headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// Sends one remote-write request body (already protobuf-encoded and snappy-compressed) with the
/// content type and version header of its `wire` protocol.
public protocol RemoteWriteTransport: Sendable {
    func send(_ body: [UInt8], wire: RemoteWriteWire, timeout: Duration) async -> TransportResult
}

extension RemoteWriteWire {
    /// The request's Content-Type, Content-Encoding and (remote write) version, as each spec gives them.
    public var headers: [(String, String)] {
        switch self {
        case .v1: [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf"), ("X-Prometheus-Remote-Write-Version", "0.1.0")]
        case .v2:
            [
                ("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                ("X-Prometheus-Remote-Write-Version", "2.0.0"),
            ]
        case .otlp: [("Content-Type", "application/x-protobuf")]
        case .otlpGzip: [("Content-Encoding", "gzip"), ("Content-Type", "application/x-protobuf")]
        }
    }
}

/// What to do with a batch after a send.
public enum PushDecision: Sendable, Equatable {
    case delivered
    /// Network error, 5xx or 429: retry after the policy's backoff, or after `retryAfter` if given.
    case retry(retryAfter: Duration?, reason: String)
    /// Another 4xx (or an unexpected status): retrying the same request cannot help. 413 (too large)
    /// is retried in smaller requests by the writer; anything else is dropped and counted.
    case reject(status: Int, reason: String)

    /// OTLP/HTTP's rules: only 429, 502, 503 and 504 (and network errors) are retryable; every other
    /// status is not (a 500 from a collector means the data cannot be taken).
    public static func decideOTLP(_ result: TransportResult, nowSeconds: Int64) -> PushDecision {
        if case .response(let status, _, let body) = result, status >= 500, ![502, 503, 504].contains(status) {
            let text = Self.excerpt(body)
            return .reject(status: status, reason: "HTTP \(status) (not retryable in OTLP)\(text.isEmpty ? "" : ": \(text)")")
        }
        return decide(result, nowSeconds: nowSeconds)
    }

    /// The retry decision per status code. `nowSeconds` (wall clock) converts an HTTP-date Retry-After.
    public static func decide(_ result: TransportResult, nowSeconds: Int64) -> PushDecision {
        switch result {
        case .failure(let why):
            return .retry(retryAfter: nil, reason: why)
        case .response(let status, _, let body):
            let text = Self.excerpt(body)
            switch status {
            case 200..<300:
                return .delivered
            case 429, 500..<600:
                let retryAfter = result.header("Retry-After").flatMap { Self.parseRetryAfter($0, nowSeconds: nowSeconds) }
                return .retry(retryAfter: retryAfter, reason: "HTTP \(status)\(text.isEmpty ? "" : ": \(text)")")
            case 300..<400:
                return .reject(status: status, reason: "HTTP \(status) (redirects are not followed: fix the URL)\(text.isEmpty ? "" : ": \(text)")")
            default:
                return .reject(status: status, reason: "HTTP \(status)\(text.isEmpty ? "" : ": \(text)")")
            }
        }
    }

    /// `Retry-After` as seconds (`120`) or an HTTP date; nil when it is neither.
    public static func parseRetryAfter(_ value: String, nowSeconds: Int64) -> Duration? {
        let v = value.trimmingWhitespace()
        if let seconds = Int64(v), seconds >= 0 { return .seconds(seconds) }
        if let date = CivilTime.parseHTTPDate(v) { return .seconds(max(0, date - nowSeconds)) }
        return nil
    }

    /// The first 256 bytes of a response body, printable, for the log.
    static func excerpt(_ body: [UInt8]) -> String {
        let limit = 256
        var text = String(decoding: body.prefix(limit), as: UTF8.self)
        text = String(text.unicodeScalars.map { $0.value < 0x20 ? " " : Character($0) })
        text = text.trimmingWhitespace()
        return body.count > limit ? text + "… (\(body.count) bytes)" : text
    }
}
