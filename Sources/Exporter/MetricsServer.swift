import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RAPLBackend
import ServiceLifecycle
import Support

/// Where `/metrics` listens: `--listen HOST:PORT`.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    /// `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (every interface); nil when it is none of these.
    public init?(_ text: String) {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
            guard host.contains(":") else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            guard !host.contains(":") else { return nil }
        }
        guard let number = Int(port), (1...65535).contains(number),
            host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" || $0 == "_" })
        else { return nil }
        self.host = host.isEmpty ? "0.0.0.0" : String(host)
        self.port = number
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// The limits that keep a client from holding the endpoint: a bounded number of connections (at the
/// bound, the connection waiting longest for a complete request is closed to admit a new one), a
/// deadline for each request to arrive whole (a client sending a byte a second is cut off), and a
/// bound on what a request may carry.
public struct MetricsServerLimits: Sendable {
    public var maxConnections = 64
    /// From a connection's opening, or its previous response, to its next complete request.
    public var requestTimeout = Duration.seconds(30)
    /// A request's body (GET has none) beyond this closes the connection. NIO's HTTP parser bounds the
    /// header block itself (80 KB; more is answered 400 and closed).
    public var maxBodyBytes = 64 * 1024

    public init() {}
}

/// The pull endpoint: `GET /metrics` (Prometheus text or OpenMetrics), `/` (a landing page),
/// `/healthz` (the healthcheck's verdict); on the daemon's event loop. A scrape reads the latest
/// published window figures (never the hardware) and formats them; nothing it does waits for the sampler.
public final class MetricsServer: Service, Sendable {
    public let address: ListenAddress
    /// Whether it serves https (a `tls_server_config` in the web configuration).
    public let tls: Bool
    private let channel: any Channel
    private let core: ServerCore

    /// Binds now (so that a port in use is an error at start), and loads the web configuration's TLS
    /// material now (so that a certificate or key that does not load is one too); serves until graceful
    /// shutdown.
    public init(
        address: ListenAddress, eventLoop: any EventLoop, state: ScrapeState, context: ScrapeContext, health: HealthFile?,
        web: WebConfig = WebConfig(), limits: MetricsServerLimits = MetricsServerLimits(),
        logger: Logger = Logger(label: "rapl-exporter.metrics")
    ) throws {
        let reloader: ServerTLSReloader?
        do { reloader = try web.tls.map { try ServerTLSReloader($0, logger: logger) } } catch {
            throw ConfigurationError(
                "web configuration: the endpoint's TLS certificate, key or client CA does not load: \(error) (\(SettingKey.webConfigFile.names); read as the unprivileged process that serves)"
            )
        }
        let gate = web.basicAuthUsers.isEmpty ? nil : BasicAuthGate(users: web.basicAuthUsers, logger: logger)
        let core = ServerCore(
            state: state, context: context, health: health, limits: limits, eventLoop: eventLoop, logger: logger, tls: reloader, gate: gate,
            headers: web.headers)
        self.core = core
        tls = reloader != nil
        channel = try ServerBootstrap(group: eventLoop)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Small reads: one read of pipelined requests is parsed and held whole, so its size bounds what
            // a client that sends without reading can make the endpoint hold (a scrape request is < 1 KB).
            .childChannelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 4096))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = ScrapeHandler(core: core)
                    if let tls = core.tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.current()))
                    }
                    // A client that sends requests and does not read the answers: stop reading from it
                    // while its answers are not being taken (they would pile up in memory); the request
                    // deadline then closes it.
                    try channel.pipeline.syncOperations.addHandler(BackPressureHandler())
                    // Pipelined requests are queued (and bounded) by the handler itself.
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withPipeliningAssistance: false, withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: address.host, port: address.port).wait()
        var bound = address
        if let port = channel.localAddress?.port { bound.port = port }
        self.address = bound
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try? await close()
    }

    /// Stops listening (open connections finish their request).
    public func close() async throws {
        try await channel.close()
        let core = self.core
        try? await core.eventLoop.submit { core.gate?.shutdown() }.get()
    }
}

/// What every connection of the server shares; touched on the event loop only.
private final class ServerCore: @unchecked Sendable {
    let state: ScrapeState
    let context: ScrapeContext
    let health: HealthFile?
    let limits: MetricsServerLimits
    let eventLoop: any EventLoop
    let logger: Logger
    let tls: ServerTLSReloader?
    let gate: BasicAuthGate?
    /// `http_server_config.headers`, on every response.
    let headers: [(String, String)]
    /// Open connections, in order of arrival.
    var connections: [ScrapeHandler] = []
    /// Reused by every scrape.
    var figures = ScrapeFigures()
    var refusedLogged = false

    init(
        state: ScrapeState, context: ScrapeContext, health: HealthFile?, limits: MetricsServerLimits, eventLoop: any EventLoop, logger: Logger,
        tls: ServerTLSReloader?, gate: BasicAuthGate?, headers: [(String, String)]
    ) {
        self.tls = tls
        self.gate = gate
        self.headers = headers
        self.state = state
        self.context = context
        self.health = health
        self.limits = limits
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// Admits a new connection: at the bound, the one waiting longest for a complete request is closed;
    /// false (the new one is refused) when every connection is busy answering.
    func admit(_ handler: ScrapeHandler) -> Bool {
        if connections.count >= limits.maxConnections {
            guard let oldest = connections.filter(\.waiting).min(by: { $0.waitingSince < $1.waitingSince }) else {
                if !refusedLogged {
                    refusedLogged = true
                    logger.warning("metrics endpoint: \(limits.maxConnections) connections busy; refusing new ones until one ends")
                }
                return false
            }
            // Out of the count at once: a burst of new connections must not each evict the same one.
            connections.removeAll { $0 === oldest }
            oldest.evict()
        }
        connections.append(handler)
        return true
    }

    func remove(_ handler: ScrapeHandler) {
        connections.removeAll { $0 === handler }
        refusedLogged = false
    }

    func body(for path: Substring, accept: String?) -> (status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
        switch path {
        case "/metrics":
            let format = ExpositionFormat.negotiate(accept: accept)
            state.read(into: &figures)
            var c = context
            c.process = ProcessFigures.current(startTimeSeconds: context.startTimeSeconds)
            c.push = state.pushFigures
            c.limits = state.limitsSnapshot
            return (.ok, format.contentType, Exposition.render(figures, c, format: format))
        case "/":
            let page = """
                <!doctype html><html><head><title>rapl-exporter</title></head><body><h1>rapl-exporter \(context.version)</h1>
                <p>CPU energy (RAPL) read with the \(context.backend) backend.</p>
                <p><a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a></p></body></html>

                """
            return (.ok, "text/html; charset=utf-8", Array(page.utf8))
        case "/healthz":
            guard let health else {
                return (.serviceUnavailable, "text/plain; charset=utf-8", Array("unhealthy: no health state (see the log: no health file)\n".utf8))
            }
            let now = SystemWallClock().nowMicroseconds() / 1000
            if let problem = health.current.problem(nowMillis: now, processAlive: true) {
                return (.serviceUnavailable, "text/plain; charset=utf-8", Array("unhealthy: \(problem)\n".utf8))
            }
            return (.ok, "text/plain; charset=utf-8", Array("healthy\n".utf8))
        default:
            return (.notFound, "text/plain; charset=utf-8", Array("not found: try /metrics\n".utf8))
        }
    }
}

/// One connection: answers its requests in order and closes it when it stops making complete requests
/// in time, sends too much, or is evicted for a newer one.
private final class ScrapeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let core: ServerCore
    private var context: ChannelHandlerContext?
    private var head: HTTPRequestHead?
    /// Complete requests not answered yet, in order: pipelined ones (at most ``maxPipelined``).
    private var queue: [HTTPRequestHead] = []
    private var answering = false
    /// Answers made since the connection's last read from its socket.
    private var answeredInRead = 0
    static let maxPipelined = 16
    private var bodyBytes = 0
    private var timer: Scheduled<Void>?
    /// Between requests (or inside one not yet complete): evictable.
    private(set) var waiting = true
    private(set) var waitingSince = NIODeadline.now()

    init(core: ServerCore) { self.core = core }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard core.admit(self) else {
            context.close(promise: nil)
            return
        }
        armDeadline()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        core.remove(self)
        self.context = nil
    }

    func evict() { context?.close(promise: nil) }

    private func armDeadline() {
        waiting = true
        waitingSince = .now()
        timer?.cancel()
        let nanoseconds = core.limits.requestTimeout.wholeNanoseconds
        let handler = NIOLoopBound(self, eventLoop: core.eventLoop)
        timer = core.eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) {
            handler.value.context?.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            bodyBytes = 0
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
            if bodyBytes > core.limits.maxBodyBytes { context.close(promise: nil) }
        case .end:
            guard let head else { return }
            self.head = nil
            guard queue.count < Self.maxPipelined else {
                // More requests sent ahead of their answers than an HTTP client pipelines (Prometheus sends
                // one at a time): the connection is closed.
                context.close(promise: nil)
                return
            }
            queue.append(head)
            answerNext()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        answeredInRead = 0
        answerNext()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { answerNext() }
        context.fireChannelWritabilityChanged()
    }

    /// Answers the next complete request, in order, unless one is being answered (bcrypt may be running),
    /// this read has had its share of answers (so one client's pipelined requests cannot hold the loop
    /// from the other connections), or the client is not taking its previous answers: then it waits
    /// until the client does (or the request deadline closes the connection), so answers cannot pile up.
    private func answerNext() {
        guard !answering, let context, !queue.isEmpty, answeredInRead < Self.maxPipelined else { return }
        guard context.channel.isWritable else {
            armDeadline()
            return
        }
        answeredInRead += 1
        answering = true
        respond(to: queue.removeFirst(), context: context)
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        timer?.cancel()
        waiting = false
        guard let gate = core.gate else {
            answer(request, access: .allowed, context: context)
            return
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        gate.check(request.headers.first(name: "authorization"), on: context.eventLoop).whenSuccess { verdict in
            // The connection may have closed while bcrypt ran.
            guard let context = bound.value.context else { return }
            bound.value.answer(request, access: verdict, context: context)
        }
    }

    private func answer(_ request: HTTPRequestHead, access: BasicAuthGate.Verdict, context: ChannelHandlerContext) {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let (status, contentType, body): (HTTPResponseStatus, String, [UInt8])
        var headers = HTTPHeaders()
        for (name, value) in core.headers { headers.add(name: name, value: value) }
        if access == .denied {
            (status, contentType, body) = (.unauthorized, "text/plain; charset=utf-8", Array("unauthorized\n".utf8))
            headers.add(name: "WWW-Authenticate", value: "Basic realm=\"rapl-exporter\", charset=\"UTF-8\"")
        } else if access == .busy {
            (status, contentType, body) = (.serviceUnavailable, "text/plain; charset=utf-8", Array("too many password checks in progress\n".utf8))
            headers.add(name: "Retry-After", value: "1")
        } else if request.method == .GET || request.method == .HEAD {
            (status, contentType, body) = core.body(for: path, accept: request.headers.first(name: "accept"))
        } else {
            (status, contentType, body) = (.methodNotAllowed, "text/plain; charset=utf-8", Array("only GET and HEAD\n".utf8))
            headers.add(name: "Allow", value: "GET, HEAD")
        }
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil) }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        answering = false
        if keepAlive {
            // The next request (or the close) is due within the deadline, whether or not the client
            // reads this answer.
            armDeadline()
            answerNext()
        } else {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.whenComplete { _ in bound.value.close(promise: nil) }
        }
    }
}
