import NIOPosix
import Testing

@testable import Exporter

/// The transport keeps its connection between requests (HTTP/1.1 keep-alive), and never at the cost of
/// a request: one the receiver asked to close, one that timed out or failed is not used again, and a
/// kept connection found closed when the request is written gets the request again on a new one.
@Suite struct KeptConnectionTests {
    func transport(_ receiver: ScriptedReceiver, maximumIdle: Duration = HTTPTransport.maximumIdle) throws -> HTTPTransport {
        try HTTPTransport(endpoint: try #require(RemoteWriteEndpoint(receiver.url)), maximumIdle: maximumIdle)
            .running(on: MultiThreadedEventLoopGroup.singleton)
    }

    func status(_ result: TransportResult) -> Int? {
        if case .response(let status, _, _) = result { return status }
        return nil
    }

    @Test func requestsShareOneConnection() async throws {
        let receiver = try await ScriptedReceiver([], keepAlive: true)
        defer { Task { await receiver.shutdown() } }
        let transport = try transport(receiver)
        for _ in 0..<3 {
            #expect(status(await transport.send([1, 2, 3], wire: .v1, timeout: .seconds(5))) == 204)
        }
        #expect(receiver.requests.count == 3)
        #expect(receiver.connections == 1)
        #expect(receiver.requests.allSatisfy { $0.header("Connection") == nil })
    }

    @Test func aConnectionIdleTooLongIsReplaced() async throws {
        // NAT gateways and proxies drop idle connections, some silently: past the idle limit (zero
        // here) the next request goes on a new connection.
        let receiver = try await ScriptedReceiver([], keepAlive: true)
        defer { Task { await receiver.shutdown() } }
        let transport = try transport(receiver, maximumIdle: .zero)
        for _ in 0..<2 {
            #expect(status(await transport.send([1], wire: .v1, timeout: .seconds(5))) == 204)
        }
        #expect(receiver.connections == 2)
    }

    @Test func aResponseThatAsksToCloseIsHonoured() async throws {
        let receiver = try await ScriptedReceiver([], keepAlive: false)
        defer { Task { await receiver.shutdown() } }
        let transport = try transport(receiver)
        for _ in 0..<3 {
            #expect(status(await transport.send([1], wire: .v1, timeout: .seconds(5))) == 204)
        }
        #expect(receiver.connections == 3)
    }

    @Test func aKeptConnectionClosedUnderTheRequestIsReplacedOnce() async throws {
        // The second request meets a connection the receiver closes without answering (its idle
        // timeout crossing the write): sent again on a new connection, it is answered.
        let receiver = try await ScriptedReceiver([.respond(204, [], ""), .close], keepAlive: true)
        defer { Task { await receiver.shutdown() } }
        let transport = try transport(receiver)
        #expect(status(await transport.send([1], wire: .v1, timeout: .seconds(5))) == 204)
        #expect(status(await transport.send([2], wire: .v1, timeout: .seconds(5))) == 204)
        #expect(receiver.requests.map(\.body) == [[1], [2], [2]])
        #expect(receiver.connections == 2)
    }

    @Test func aNewConnectionClosedUnansweredIsAFailureNotALoop() async throws {
        let receiver = try await ScriptedReceiver([.close, .close], keepAlive: true)
        defer { Task { await receiver.shutdown() } }
        let transport = try transport(receiver)
        let result = await transport.send([1], wire: .v1, timeout: .seconds(5))
        guard case .failure(let why) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(why.contains("connection closed before a complete response"))
        #expect(receiver.requests.count == 1)
    }

    @Test func aConnectionThatTimedOutIsNotUsedAgain() async throws {
        let receiver = try await ScriptedReceiver([.hang], keepAlive: true)
        defer { Task { await receiver.shutdown() } }
        let transport = try transport(receiver)
        let first = await transport.send([1], wire: .v1, timeout: .milliseconds(300))
        guard case .failure(let why) = first else {
            Issue.record("expected a timeout, got \(first)")
            return
        }
        #expect(why.contains("request timeout"))
        #expect(status(await transport.send([2], wire: .v1, timeout: .seconds(5))) == 204)
        #expect(receiver.connections == 2)
    }

    @Test func cancellationEndsARequestInFlightAtOnce() async throws {
        let receiver = try await ScriptedReceiver([.hang], keepAlive: true)
        defer { Task { await receiver.shutdown() } }
        let transport = try transport(receiver)
        let sending = Task { await transport.send([1], wire: .v1, timeout: .seconds(3600)) }
        try await waitUntil("the request to arrive") { receiver.requests.count == 1 }
        sending.cancel()
        #expect(await sending.value == .failure("cancelled by shutdown"))
        // The cancelled request's connection is not used again.
        #expect(status(await transport.send([2], wire: .v1, timeout: .seconds(5))) == 204)
        #expect(receiver.connections == 2)
    }
}
