import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RAPLBackend

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
        self.headers = [
            ("Host", endpoint.hostHeader),
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ("User-Agent", Self.userAgent),
            ("Connection", "close"),
        ] + extraHeaders
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
        do {
            if let value = try authorization.headerValue() { head.headers.add(name: "Authorization", value: value) }
        } catch {
            // The message names the file and the errno, never its content.
            return .failure("cannot read the credentials: \(error)")
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
            return try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                promise.fail(CancellationError())  // no-op when the exchange already completed it
            }
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
            handler.complete(.failure(ExchangeError(description: "no complete response within \(handler.timeout) (request timeout)")), context: context)
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

public enum ExporterVersion {
    public static let current = "0.1.0"
}
