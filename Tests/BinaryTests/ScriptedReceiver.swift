import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RemoteWriteProtobuf
import Synchronization

@testable import Exporter

/// An in-process HTTP receiver on 127.0.0.1 that answers from a script (then 204), records every
/// request with its arrival time, and can hang without answering or close the connection unanswered.
/// Each answer asks the client to close the connection, unless made with `keepAlive`.
final class ScriptedReceiver: Sendable {
    enum Action: Sendable {
        case respond(Int, [(String, String)], String)
        case hang
        /// Closes the connection without a byte of answer.
        case close
    }

    struct Request: Sendable {
        var time: Date
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        var writeRequest: Prometheus_WriteRequest? {
            Snappy.uncompress(body).flatMap { try? Prometheus_WriteRequest(serializedBytes: $0) }
        }
    }

    private let state: Mutex<(script: [Action], requests: [Request], connections: Int)>
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: any Channel
    let port: Int

    /// With `tls` (PEM certificate and key paths) it serves https.
    /// What every request gets once the script is used up.
    private let answer: Action

    init(
        _ script: [Action], tls: (certificate: String, key: String)? = nil, keepAlive: Bool = false, answer: Action = .respond(204, [], "")
    ) async throws {
        self.answer = answer
        let state = Mutex((script: script, requests: [Request](), connections: 0))
        self.state = state
        let box = StateBox(receiver: nil)
        let sslContext = try tls.map { tls in
            try NIOSSLContext(
                configuration: .makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificate).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.key, format: .pem))
                ))
        }
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(box: box, keepAlive: keepAlive))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
        box.receiver.withLock { $0 = self }
    }

    func shutdown() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }

    var url: String { "http://127.0.0.1:\(port)/api/v1/write" }
    var httpsURL: String { "https://127.0.0.1:\(port)/api/v1/write" }
    var requests: [Request] { state.withLock { $0.requests } }
    /// Connections accepted so far.
    var connections: Int { state.withLock { $0.connections } }

    fileprivate func connected() { state.withLock { $0.connections += 1 } }

    fileprivate func record(_ request: Request) -> Action {
        state.withLock { s in
            s.requests.append(request)
            return s.script.isEmpty ? answer : s.script.removeFirst()
        }
    }

    final class StateBox: Sendable {
        let receiver: Mutex<ScriptedReceiver?>
        init(receiver: ScriptedReceiver?) { self.receiver = Mutex(receiver) }
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let box: StateBox
        let keepAlive: Bool
        var headers: [(String, String)] = []
        var body: [UInt8] = []

        init(box: StateBox, keepAlive: Bool) {
            self.box = box
            self.keepAlive = keepAlive
        }

        func channelActive(context: ChannelHandlerContext) {
            box.receiver.withLock { $0 }?.connected()
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                headers = head.headers.map { ($0.name, $0.value) }
                body = []
            case .body(var buffer):
                body.append(contentsOf: buffer.readBytes(length: buffer.readableBytes) ?? [])
            case .end:
                guard let receiver = box.receiver.withLock({ $0 }) else { return }
                let action = receiver.record(Request(time: Date(), headers: headers, body: body))
                if case .close = action { context.close(promise: nil) }
                guard case .respond(let status, let extra, let text) = action else { return }
                var head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status))
                for (k, v) in extra { head.headers.add(name: k, value: v) }
                head.headers.add(name: "Content-Length", value: String(text.utf8.count))
                if !keepAlive { head.headers.add(name: "Connection", value: "close") }
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in }
            }
        }
    }
}
