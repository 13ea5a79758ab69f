import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RAPLBackend
import Support
import Synchronization

/// Remote write over HTTP/1.1 with SwiftNIO. One connection, kept open between requests (HTTP/1.1
/// keep-alive: a push is then one write and one read, not a TCP — or TLS — handshake and a teardown);
/// requests go one at a time, so one connection is all there is; one idle for more than a minute is
/// replaced. The whole exchange — connect, send,
/// response — is bounded by the request timeout, so a hanging receiver cannot stall the queue; a
/// connection that timed out, failed, or that the receiver asked to close is not used again. When a
/// kept connection turns out closed by the receiver before any answer (its idle timeout crossing our
/// write), the request is sent once more on a new connection.
public struct HTTPTransport: RemoteWriteTransport {
    public let endpoint: RemoteWriteEndpoint
    /// The fixed headers; the protocol's content type and version, and the Authorization header (from its
    /// file) are added per request.
    public let headers: [(String, String)]
    private let authorization: RemoteWriteAuthorization
    private let sslContext: NIOSSLContext?
    private let serverName: String?
    private var explicitGroup: (any EventLoopGroup)?
    /// NIO's shared group, created at the first request: its threads must start after the process has
    /// dropped its capabilities, so that they hold none.
    private var group: any EventLoopGroup { explicitGroup ?? MultiThreadedEventLoopGroup.singleton }

    /// Values of the user's extra headers, long enough to be worth redacting from response bodies.
    private let redactedHeaderValues: [String]
    /// The connection kept open between requests.
    private let kept: KeptConnection
    /// The request head of each wire protocol, built once: a request adds Content-Length and, with
    /// credentials, Authorization (a push runs on a cold CPU: the less it builds, the less it costs).
    private let heads: [(wire: RemoteWriteWire, head: HTTPRequestHead)]

    /// A kept connection idle for longer is not used again (see `KeptConnection`).
    public static let maximumIdle = Duration.seconds(60)

    public static let userAgent = "rapl-exporter/\(ExporterVersion.current)"

    /// The remote-write headers plus `extraHeaders`; TLS when the endpoint is https.
    /// Throws when the TLS material (CA, certificate, key) cannot be loaded.
    public init(
        endpoint: RemoteWriteEndpoint,
        tls: TLSSettings = TLSSettings(),
        authorization: RemoteWriteAuthorization = .none,
        extraHeaders: [(String, String)] = [],
        group: (any EventLoopGroup)? = nil,
        maximumIdle: Duration = HTTPTransport.maximumIdle
    ) throws {
        self.endpoint = endpoint
        self.kept = KeptConnection(maximumIdle: maximumIdle)
        self.explicitGroup = group
        self.authorization = authorization
        self.headers =
            [
                ("Host", endpoint.hostHeader),
                ("User-Agent", Self.userAgent),
            ] + extraHeaders
        self.redactedHeaderValues = extraHeaders.map(\.1).filter { $0.count >= 4 }
        let fixed = headers
        self.heads = RemoteWriteWire.allCases.map { wire in
            var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: endpoint.target)
            for (name, value) in fixed + wire.headers { head.headers.add(name: name, value: value) }
            return (wire, head)
        }
        if endpoint.tls {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let ca = tls.caFile {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            }
            if let cert = tls.certificateFile, let key = tls.keyFile {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            }
            if tls.insecureSkipVerify { configuration.certificateVerification = .none }
            sslContext = try NIOSSLContext(configuration: configuration)
            // SNI takes host names only, not IP addresses.
            let name = tls.serverName ?? endpoint.host
            serverName = Self.isIPAddress(name) ? nil : name
        } else {
            sslContext = nil
            serverName = nil
        }
    }

    /// The same transport, its connections on `group`'s loops (the daemon's one event loop).
    public func running(on group: any EventLoopGroup) -> HTTPTransport {
        var copy = self
        copy.explicitGroup = group
        return copy
    }

    static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
    }

    public func send(_ body: [UInt8], wire: RemoteWriteWire, timeout: Duration) async -> TransportResult {
        let nanoseconds = max(1, timeout.wholeNanoseconds)
        let deadline = NIODeadline.now() + .nanoseconds(nanoseconds)
        var head = heads.first { $0.wire == wire }!.head
        head.headers.add(name: "Content-Length", value: String(body.count))
        // What a response body must not echo into the log: the credentials sent, and the values of
        // the extra headers (API keys travel there too).
        var secrets = redactedHeaderValues
        do {
            if let (value, secret) = try authorization.header() {
                head.headers.add(name: "Authorization", value: value)
                secrets += [value, String(value.drop { $0 != " " }.dropFirst()), secret]
            }
        } catch {
            // The message names the file and the problem, never its content.
            return .failure("cannot use the credentials: \(error)")
        }
        var reused = kept.take()
        while true {
            let outcome = await exchange(head, body, on: reused, deadline: deadline, nanoseconds: nanoseconds)
            switch outcome {
            case .unanswered where reused != nil:
                // The receiver closed the kept connection as we wrote: say it again on a new one.
                reused = nil
                continue
            case .unanswered(let error):
                let why = error.map { Self.describe($0) } ?? "connection closed before a complete response"
                return .failure("\(endpoint.host):\(endpoint.port): \(why)")
            case .failed(let error) where error is CancellationError:
                return .failure("cancelled by shutdown")
            case .failed(let error):
                return .failure("\(endpoint.host):\(endpoint.port): \(Self.describe(error))")
            case .answered(let status, let headers, let responseBody, _):
                return .response(status: status, headers: headers, body: Redaction.redact(responseBody, secrets))
            }
        }
    }

    /// One request on `channel` (a kept connection) or on a new connection. The connection is kept for
    /// the next request only when the response came complete and allows it.
    private func exchange(
        _ head: HTTPRequestHead, _ body: [UInt8], on channel: (any Channel)?, deadline: NIODeadline, nanoseconds: Int64
    ) async -> ExchangeOutcome {
        let connection: any Channel
        if let channel {
            connection = channel
        } else {
            do {
                connection = try await connect(nanoseconds: nanoseconds)
            } catch {
                return .failed(error)
            }
        }
        let promise = connection.eventLoop.makePromise(of: ExchangeOutcome.self)
        let timeout = Duration(wholeNanoseconds: nanoseconds)
        let request = Exchange(head: head, body: body, deadline: deadline, timeout: timeout, promise: promise)
        // A kept connection closed under us fails the write: nothing was sent.
        connection.writeAndFlush(request).whenFailure { promise.succeed(.unanswered($0)) }
        let outcome: ExchangeOutcome
        do {
            outcome = try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                promise.fail(CancellationError())  // no-op when the exchange already completed it
            }
        } catch {
            outcome = .failed(error)
        }
        if case .answered(_, _, _, keepAlive: true) = outcome, connection.isActive {
            kept.put(connection)
        } else {
            connection.close(promise: nil)
        }
        return outcome
    }

    /// A new connection with the TLS (when https) and HTTP handlers, within `nanoseconds`; cancellation
    /// (shutdown) abandons it at once instead of waiting out the connect timeout.
    private func connect(nanoseconds: Int64) async throws -> any Channel {
        let sslContext = sslContext
        let serverName = serverName
        let connected = ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(nanoseconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                    }
                    // NIO's outbound header validation is off: every value sent is checked by rapl-exporter
                    // before it gets here (the URL and the extra headers at start, refused with exit 2; the
                    // token and password files at each read: no NUL, CR, LF or control character), and the
                    // validator walked every header of every push (about an eighth of a push's instructions).
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        position: ChannelPipeline.SynchronousOperations.Position.last, enableOutboundHeaderValidation: false)
                    try channel.pipeline.syncOperations.addHandler(ExchangeHandler())
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
        let outcome = group.next().makePromise(of: (any Channel).self)
        connected.cascade(to: outcome)
        return try await withTaskCancellationHandler {
            try await outcome.futureResult.get()
        } onCancel: {
            outcome.fail(CancellationError())  // no-op once connected or failed
            connected.whenSuccess { $0.close(promise: nil) }
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? ExchangeError { return e.description }
        if let e = error as? NIOSSLError { return "TLS: \(e) (check --tls-ca-file / --tls-server-name)" }
        if let e = error as? BoringSSLError { return "TLS: \(e) (check --tls-ca-file / --tls-server-name)" }
        if error is ChannelError, case ChannelError.connectTimeout = error as! ChannelError { return "connect timed out" }
        return "\(error)"
    }
}

/// Start-up checks of the TLS files, one by one, so that a failure says which file and why.
public enum TLSFiles {
    /// Nil when `path` is a readable regular file holding PEM certificates (or, `isKey`, a PEM private
    /// key); else the reason.
    public static func problem(_ path: String, isKey: Bool) -> String? {
        let bytes: [UInt8]
        do { bytes = try TextFile.readRegular(path, limit: 1 << 20) } catch { return "\(error)" }
        do {
            if isKey {
                _ = try NIOSSLPrivateKey(bytes: bytes, format: .pem)
            } else {
                let certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
                if certificates.isEmpty { return "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)" }
            }
        } catch {
            return "not a PEM \(isKey ? "private key" : "certificate file") (\(error))"
        }
        return nil
    }
}

/// Replaces every occurrence of the given secrets in a response body by `<redacted>`, longest first.
enum Redaction {
    static func redact(_ body: [UInt8], _ secrets: [String]) -> [UInt8] {
        // The common answer (204, no body) and the common configuration (no credentials) cost nothing.
        if body.isEmpty || secrets.isEmpty { return body }
        var out = body
        for secret in Set(secrets).filter({ $0.utf8.count >= 4 }).sorted(by: { $0.utf8.count > $1.utf8.count }) {
            out = replace(Array(secret.utf8), in: out)
        }
        return out
    }

    private static func replace(_ needle: [UInt8], in haystack: [UInt8]) -> [UInt8] {
        guard haystack.count >= needle.count else { return haystack }
        let mark = Array("<redacted>".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(haystack.count)
        var i = 0
        while i < haystack.count {
            if i + needle.count <= haystack.count, haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) {
                out += mark
                i += needle.count
            } else {
                out.append(haystack[i])
                i += 1
            }
        }
        return out
    }
}

struct ExchangeError: Error, CustomStringConvertible {
    var description: String
}

/// A request in flight on a connection, and where its outcome goes.
private struct Exchange {
    var head: HTTPRequestHead
    var body: [UInt8]
    var deadline: NIODeadline
    /// For the message when the deadline passes.
    var timeout: Duration
    var promise: EventLoopPromise<ExchangeOutcome>
}

/// How one exchange ended.
private enum ExchangeOutcome: Sendable {
    case answered(status: Int, headers: [(String, String)], body: [UInt8], keepAlive: Bool)
    /// The connection closed or failed (the error, when there was one) before any byte of a response.
    case unanswered((any Error)?)
    case failed(any Error)
}

/// The one idle connection between requests. One idle for longer than `maximumIdle` is not used again:
/// NAT gateways and proxies drop idle connections, some without a word, and a request written into one
/// would wait out its whole timeout.
private final class KeptConnection: Sendable {
    private let maximumIdle: TimeAmount
    private let kept = Mutex<(channel: any Channel, since: NIODeadline)?>(nil)

    init(maximumIdle: Duration) { self.maximumIdle = .nanoseconds(maximumIdle.wholeNanoseconds) }

    /// The kept connection, if it is still open and was not idle too long (it is no longer kept).
    func take() -> (any Channel)? {
        let taken = kept.withLock { kept in
            defer { kept = nil }
            return kept
        }
        guard let (channel, since) = taken else { return nil }
        guard channel.isActive, NIODeadline.now() - since < maximumIdle else {
            channel.close(promise: nil)
            return nil
        }
        return channel
    }

    func put(_ connection: any Channel) {
        let previous = kept.withLock { kept in
            defer { kept = (connection, NIODeadline.now()) }
            return kept?.channel
        }
        if let previous, previous !== connection { previous.close(promise: nil) }
    }
}

/// On a connection for its whole life: writes each request (`Exchange`) written to the channel,
/// collects its response, and completes its promise exactly once — on the response's end, on an error,
/// on the connection closing, or at the deadline (then the connection is closed, never reused).
private final class ExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Exchange
    typealias OutboundOut = HTTPClientRequestPart

    private var promise: EventLoopPromise<ExchangeOutcome>?
    private var status = 0
    private var headers: [(String, String)] = []
    private var responseBody: [UInt8] = []
    private var keepAlive = false
    private var answered = false
    private var timer: Scheduled<Void>?

    /// Response bodies are kept for the log only; this much is plenty.
    private static let bodyLimit = 64 * 1024

    private func complete(_ outcome: ExchangeOutcome, context: ChannelHandlerContext, close: Bool) {
        guard let promise else { return }
        self.promise = nil
        timer?.cancel()
        timer = nil
        promise.succeed(outcome)
        if close { context.close(promise: nil) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise writePromise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        guard promise == nil else {
            exchange.promise.fail(ExchangeError(description: "a request is already in flight on this connection"))
            return
        }
        promise = exchange.promise
        status = 0
        headers = []
        responseBody = []
        answered = false
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let timeout = exchange.timeout
        timer = context.eventLoop.scheduleTask(deadline: exchange.deadline) {
            let (handler, context) = loopBound.value
            handler.complete(
                .failed(ExchangeError(description: "no complete response within \(timeout) (request timeout)")), context: context, close: true)
        }
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: exchange.body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: writePromise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        answered = true
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            headers = head.headers.map { ($0.name, $0.value) }
            keepAlive = head.isKeepAlive
        case .body(var buffer):
            let room = Self.bodyLimit - responseBody.count
            if room > 0, let bytes = buffer.readBytes(length: min(room, buffer.readableBytes)) {
                responseBody.append(contentsOf: bytes)
            }
        case .end:
            complete(.answered(status: status, headers: headers, body: responseBody, keepAlive: keepAlive), context: context, close: !keepAlive)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(
            answered ? .failed(ExchangeError(description: "connection closed before a complete response")) : .unanswered(nil),
            context: context, close: false)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(answered ? .failed(error) : .unanswered(error), context: context, close: true)
    }
}
