import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RAPLBackend
import Support

/// Remote write over HTTP/1.1 with SwiftNIO: one connection per request (a push every few seconds does
/// not need pooling), the whole exchange — connect, send, response — bounded by the request timeout, so
/// a hanging receiver cannot stall the queue.
public struct HTTPTransport: RemoteWriteTransport {
    public let endpoint: RemoteWriteEndpoint
    /// The fixed headers; the Authorization header is added per request, from its file.
    public let headers: [(String, String)]
    private let authorization: RemoteWriteAuthorization
    private let sslContext: NIOSSLContext?
    private let serverName: String?
    private let explicitGroup: (any EventLoopGroup)?
    /// NIO's shared group, created at the first request: its threads must start after the process has
    /// dropped its capabilities, so that they hold none.
    private var group: any EventLoopGroup { explicitGroup ?? MultiThreadedEventLoopGroup.singleton }

    /// Values of the user's extra headers, long enough to be worth redacting from response bodies.
    private let redactedHeaderValues: [String]

    public static let userAgent = "rapl-exporter/\(ExporterVersion.current)"

    /// The remote-write 1.0 headers plus `extraHeaders`; TLS when the endpoint is https.
    /// Throws when the TLS material (CA, certificate, key) cannot be loaded.
    public init(
        endpoint: RemoteWriteEndpoint,
        tls: TLSSettings = TLSSettings(),
        authorization: RemoteWriteAuthorization = .none,
        extraHeaders: [(String, String)] = [],
        group: (any EventLoopGroup)? = nil
    ) throws {
        self.endpoint = endpoint
        self.explicitGroup = group
        self.authorization = authorization
        self.headers =
            [
                ("Host", endpoint.hostHeader),
                ("Content-Encoding", "snappy"),
                ("Content-Type", "application/x-protobuf"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
                ("User-Agent", Self.userAgent),
                ("Connection", "close"),
            ] + extraHeaders
        self.redactedHeaderValues = extraHeaders.map(\.1).filter { $0.count >= 4 }
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

    static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
    }

    public func send(_ body: [UInt8], timeout: Duration) async -> TransportResult {
        let nanoseconds = max(Int64(1), Int64(timeout.seconds * 1e9))
        let deadline = NIODeadline.now() + .nanoseconds(nanoseconds)
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: endpoint.target)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
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
        let promise = group.next().makePromise(of: TransportResult.self)
        let request = head
        let sslContext = sslContext
        let serverName = serverName
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(nanoseconds))
            .channelInitializer { channel in
                do {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(
                        ExchangeHandler(request: request, body: body, deadline: deadline, timeout: timeout, promise: promise)
                    )
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        // The exchange completes the promise; so do a failed connect and cancellation (shutdown
        // abandons the request in flight at once instead of waiting out its timeout).
        let connected = bootstrap.connect(host: endpoint.host, port: endpoint.port)
        connected.whenFailure { promise.fail($0) }
        promise.futureResult.whenComplete { _ in connected.whenSuccess { $0.close(promise: nil) } }
        do {
            let result = try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                promise.fail(CancellationError())  // no-op when the exchange already completed it
            }
            guard case .response(let status, let headers, let body) = result else { return result }
            return .response(status: status, headers: headers, body: Redaction.redact(body, secrets))
        } catch is CancellationError {
            return .failure("cancelled by shutdown")
        } catch {
            return .failure("\(endpoint.host):\(endpoint.port): \(Self.describe(error))")
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

/// Writes the request when the connection is up, collects the response, and completes the promise
/// exactly once: on the response's end, on an error, on the connection closing early, or at the deadline.
private final class ExchangeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let request: HTTPRequestHead
    private let body: [UInt8]
    private let deadline: NIODeadline
    private let timeout: Duration
    private let promise: EventLoopPromise<TransportResult>
    private var status = 0
    private var headers: [(String, String)] = []
    private var responseBody: [UInt8] = []
    private var completed = false
    private var timer: Scheduled<Void>?

    /// Response bodies are kept for the log only; this much is plenty.
    private static let bodyLimit = 64 * 1024

    init(request: HTTPRequestHead, body: [UInt8], deadline: NIODeadline, timeout: Duration, promise: EventLoopPromise<TransportResult>) {
        self.request = request
        self.body = body
        self.deadline = deadline
        self.timeout = timeout
        self.promise = promise
    }

    private func complete(_ result: Result<TransportResult, any Error>, context: ChannelHandlerContext) {
        guard !completed else { return }
        completed = true
        timer?.cancel()
        promise.completeWith(result)
        context.close(promise: nil)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.complete(
                .failure(ExchangeError(description: "no complete response within \(handler.timeout) (request timeout)")), context: context)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(request)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            headers = head.headers.map { ($0.name, $0.value) }
        case .body(var buffer):
            let room = Self.bodyLimit - responseBody.count
            if room > 0, let bytes = buffer.readBytes(length: min(room, buffer.readableBytes)) {
                responseBody.append(contentsOf: bytes)
            }
        case .end:
            complete(.success(.response(status: status, headers: headers, body: responseBody)), context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(.failure(ExchangeError(description: "connection closed before a complete response")), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(.failure(error), context: context)
    }
}
