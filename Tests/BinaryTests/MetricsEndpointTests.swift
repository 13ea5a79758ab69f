import Foundation
import NIOPosix
import RAPLBackend
import TestSupport
import Testing

@testable import Exporter

/// A blocking TCP client for what a well-behaved HTTP client will not do (hostile clients).
final class RawConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { throw TimeoutError(description: "connect: errno \(errno)") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Sends what the socket takes now, without waiting; returns the bytes sent.
    func sendWithoutWaiting(_ bytes: [UInt8]) -> Int {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n <= 0 { break }
            sent += n
        }
        return sent
    }

    /// What arrives until `done` says the text so far is enough, or the peer closes (or 5 s pass).
    func read(until done: (String) -> Bool = { _ in false }) -> String {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !done(String(decoding: out, as: UTF8.self)) {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buffer[..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// What arrives until `responses` answers have come (counted by their status lines) or the peer closes.
    func readToEnd(responses: Int) -> String {
        read { $0.components(separatedBy: "HTTP/1.1 ").count - 1 >= responses }
    }

    /// What arrives until the peer closes or 5 s pass.
    func readToEnd() -> String { read() }

    /// One response to a request already sent (up to its Content-Length).
    func readResponse() -> String {
        read { text in
            guard let split = text.range(of: "\r\n\r\n") else { return false }
            let head = text[..<split.lowerBound].lowercased()
            guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
                let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
            else { return false }
            return text.utf8.count - text[..<split.upperBound].utf8.count >= length
        }
    }
}

/// The /metrics endpoint in-process: what it serves, and that hostile clients cannot take it away.
@Suite struct MetricsEndpointTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    func server(limits: MetricsServerLimits = MetricsServerLimits(), health: HealthFile? = nil) throws -> (MetricsServer, ScrapeState) {
        let state = ScrapeState()
        let context = ScrapeContext(nameStyle: .seed, version: "1.2.3", backend: "sysfs", startTimeSeconds: 1_700_000_000.5, process: nil)
        let server = try MetricsServer(
            address: ListenAddress("127.0.0.1:1024")!.with(port: 0), eventLoop: loop, state: state,
            context: context, health: health, limits: limits)
        return (server, state)
    }

    func window(_ domains: [Domain], _ energy: [UInt64?], end: Int64 = 1_700_000_001_000_000) -> EnergyWindow {
        // (stuck, errors and glitches at zero)
        EnergyWindow(
            startMicroseconds: end - 100_000, endMicroseconds: end, duration: .milliseconds(100), domains: domains, energy: energy,
            stuck: domains.map { _ in false }, readErrors: domains.map { _ in 0 }, glitches: domains.map { _ in 0 }, lateWindows: 0,
            missedWindows: 0, clockSteps: 0, clockStepMicroseconds: 0)
    }

    func get(_ port: Int, _ path: String, headers: String = "") throws -> String {
        let c = try RawConnection(port: port)
        c.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\(headers)Connection: close\r\n\r\n")
        return c.readToEnd()
    }

    @Test func metricsAreTheSumOfTheWindowsInBothFormats() async throws {
        let (server, state) = try server()
        defer { Task { try? await server.close() } }
        let domains = [Domain(.package, socket: 0), Domain(.dram, socket: 1)]
        state.accept(window(domains, [1_500_000, 7]))
        state.accept(window(domains, [2_000_001, nil]))  // a glitch or failed read is no energy
        let text = try get(server.address.port, "/metrics")
        #expect(text.hasPrefix("HTTP/1.1 200 OK"))
        #expect(text.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"))
        #expect(text.contains("# TYPE rapl_energy_joules_total counter\n"))
        #expect(text.contains("rapl_energy_joules_total{component=\"package-0\",socket=\"0\"} 3.500001\n"))
        #expect(text.contains("rapl_energy_joules_total{component=\"dram\",socket=\"1\"} 0.000007\n"))
        #expect(text.contains("rapl_exporter_windows_total 2\n"))
        #expect(text.contains("# TYPE rapl_exporter_build_info gauge\nrapl_exporter_build_info{version=\"1.2.3\",backend=\"sysfs\"} 1\n"))
        #expect(text.contains("process_resident_memory_bytes "))
        #expect(!text.contains("# EOF"))
        let open = try get(server.address.port, "/metrics", headers: "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n")
        #expect(open.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"))
        #expect(open.contains("# TYPE rapl_energy_joules counter\n"))
        #expect(open.contains("rapl_energy_joules_created{component=\"package-0\",socket=\"0\"} 1700000000.500\n"))
        #expect(open.contains("# TYPE rapl_exporter_build info\nrapl_exporter_build_info{version=\"1.2.3\",backend=\"sysfs\"} 1\n"))
        #expect(open.hasSuffix("# EOF\n"))
    }

    /// Both formats parse with the reference parsers (prometheus-client, from PyPI, in the receivers'
    /// venv), label escaping included, and the values read back are the ones served.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: Self.python), "run scripts/install-receivers"))
    func theReferenceParsersReadBothFormats() async throws {
        let (server, state) = try server()
        defer { Task { try? await server.close() } }
        let odd = Domain(.other("we\"ird\\zone\nname"), socket: 1)
        state.accept(window([Domain(.package, socket: 0), odd], [2_500_000, 1]))
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families as text
            from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
            parse = om if sys.argv[1] == "om" else text
            out = {}
            for family in parse(sys.stdin.read()):
                for s in family.samples:
                    out[s.name + json.dumps(s.labels, sort_keys=True)] = [family.type, s.value]
            print(json.dumps(out))
            """
        for (flag, accept) in [("text", ""), ("om", "Accept: application/openmetrics-text; version=1.0.0\r\n")] {
            let response = try get(server.address.port, "/metrics", headers: accept)
            let body = String(response[try #require(response.range(of: "\r\n\r\n")).upperBound...])
            let file = NSTemporaryDirectory() + "scrape-\(UUID().uuidString)"
            try body.write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let run = try await Binary.run("/bin/sh", ["-c", "\"$0\" -c \"$1\" \(flag) < \"$2\"", Self.python, script, file])
            #expect(run.status == 0, "\(flag): \(run.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8))
            let parsed = try #require(json as? [String: [Any]], "\(run.stdout)")
            func value(_ key: String) -> Double? { parsed[key]?[1] as? Double }
            #expect(value("rapl_energy_joules_total{\"component\": \"package-0\", \"socket\": \"0\"}") == 2.5, "\(flag)")
            #expect(value("rapl_energy_joules_total{\"component\": \"we\\\"ird\\\\zone\\nname\", \"socket\": \"1\"}") == 0.000001, "\(flag)")
            #expect((parsed["rapl_energy_joules_total{\"component\": \"package-0\", \"socket\": \"0\"}"]?[0] as? String) == "counter")
            #expect(value("rapl_exporter_windows_total{}") == 1, "\(flag)")
        }
    }

    static var python: String { Receivers.directory + "/../../venv/bin/python" }

    @Test func theOtherPathsAndMethods() async throws {
        let (server, _) = try server()
        defer { Task { try? await server.close() } }
        let port = server.address.port
        #expect(try get(port, "/").contains("<a href=\"/metrics\">"))
        #expect(try get(port, "/nope").hasPrefix("HTTP/1.1 404"))
        // No health file: the same verdict the healthcheck command would give (unhealthy).
        #expect(try get(port, "/healthz").hasPrefix("HTTP/1.1 503"))
        let c = try RawConnection(port: port)
        c.send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        let post = c.readToEnd()
        #expect(post.hasPrefix("HTTP/1.1 405"))
        #expect(post.contains("Allow: GET, HEAD"))
        let h = try RawConnection(port: port)
        h.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let head = h.readToEnd()
        #expect(head.hasPrefix("HTTP/1.1 200"))
        #expect(!head.contains("rapl_energy"))
    }

    @Test func scrapesShareAKeptAliveConnection() async throws {
        let (server, _) = try server()
        defer { Task { try? await server.close() } }
        let c = try RawConnection(port: server.address.port)
        for _ in 0..<3 {
            c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(c.readResponse().hasPrefix("HTTP/1.1 200"))
        }
    }

    /// Pipelined requests (sent before their answers are read) are answered in order; more than 16
    /// outstanding — no HTTP client pipelines that deep — close the connection.
    @Test func pipelinedRequestsAreAnsweredInOrderAndBounded() async throws {
        let (server, _) = try server()
        defer { Task { try? await server.close() } }
        let c = try RawConnection(port: server.address.port)
        c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let answers = c.readToEnd(responses: 3)
        let statuses = answers.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["503", "404", "200"], "\(answers)")
        let flood = try RawConnection(port: server.address.port)
        flood.send(String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 200))
        let flooded = flood.readToEnd()
        let answered = flooded.components(separatedBy: "HTTP/1.1 200").count - 1
        #expect(answered >= 16 && answered <= 32, "answered \(answered) of 200 pipelined requests, then closed")
    }

    @Test func hostileClientsCannotHoldTheEndpoint() async throws {
        var limits = MetricsServerLimits()
        limits.maxConnections = 8
        limits.requestTimeout = .milliseconds(500)
        let (server, _) = try server(limits: limits)
        defer { Task { try? await server.close() } }
        let port = server.address.port
        // Idle connections beyond the bound, and slow ones sending a byte at a time.
        let idle = try (0..<40).map { _ in try RawConnection(port: port) }
        let slow = try (0..<4).map { _ in try RawConnection(port: port) }
        for c in slow { c.send("GET /met") }
        // A header of 1 MB, garbage bytes, a body too large: refused, connection closed.
        let huge = try RawConnection(port: port)
        huge.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 1 << 20))\r\n\r\n")
        let garbage = try RawConnection(port: port)
        garbage.send([0x16, 0x03, 0x01, 0xff, 0x00, 0x13, 0x37] + Array("\r\n\r\n".utf8))
        // A normal scrape is still answered, quickly: the best of three (the tests run in parallel on two
        // CPUs, and one scrape may wait for a CPU the runner holds — seen at 210 ms in CI — which is not
        // the endpoint's doing; held by hostile clients it would wait for seconds or forever).
        var took = Duration.seconds(60)
        for _ in 0..<3 {
            let start = ContinuousClock.now
            let answer = try get(port, "/metrics")
            #expect(answer.hasPrefix("HTTP/1.1 200"))
            took = min(took, start.duration(to: .now))
        }
        #expect(took < .milliseconds(200))
        #expect(!huge.readToEnd().hasPrefix("HTTP/1.1 200"))
        #expect(!garbage.readToEnd().hasPrefix("HTTP/1.1 200"))
        // The slow ones are cut off at the request deadline.
        for c in slow { #expect(c.readToEnd().isEmpty) }
        _ = idle
    }
}

/// The daemon's endpoint under the issue's hostile load, with its default limits: 500 idle connections,
/// slow ones, a 1 MB header, garbage — a normal scrape is still answered within 100 ms, and the daemon's
/// memory stays bounded.
@Suite struct MetricsEndpointUnderLoadTests {
    /// The best of three scrapes, and its answer: the tests run in parallel on two CPUs, and one scrape
    /// may wait for a CPU the test runner holds, which is not the endpoint's doing.
    func bestOfThreeScrapes(_ port: Int) throws -> (answer: String, took: Duration) {
        var answer = ""
        var took = Duration.seconds(60)
        for _ in 0..<3 {
            let start = ContinuousClock.now
            let scrape = try RawConnection(port: port)
            scrape.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = scrape.readResponse()
            took = min(took, start.duration(to: .now))
        }
        return (answer, took)
    }

    func residentKB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    @Test func fiveHundredIdleConnectionsDoNotLockPrometheusOut() async throws {
        let tree = FakeTree.powercap()
        let port = freePort()
        let daemon = try Daemon(tree.sysfsArguments + ["--listen", "127.0.0.1:\(port)", "--duration", "60"])
        try await daemon.waitSampling()
        let pid = daemon.process.processIdentifier
        _ = try RawConnection(port: port)  // the listener is up
        let before = residentKB(pid)
        var hostile: [RawConnection] = []
        for _ in 0..<500 { hostile.append(try RawConnection(port: port)) }
        for c in hostile.prefix(20) { c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ") }
        let huge = try RawConnection(port: port)
        huge.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 1 << 20))\r\n\r\n")
        let garbage = try RawConnection(port: port)
        garbage.send(Array(repeating: 0xff, count: 4096))
        let (answer, took) = try bestOfThreeScrapes(port)
        let after = residentKB(pid)
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer.prefix(200))")
        #expect(answer.contains("rapl_energy_joules_total{component=\"package-0\""))
        #expect(took < .milliseconds(100), "\(took)")
        #expect(after - before < 8 * 1024, "RSS grew from \(before) kB to \(after) kB")
        _ = (huge, garbage)
    }

    /// Clients that pipeline thousands of requests and never read an answer: the endpoint stops reading
    /// from a connection whose answers are not being taken (they would pile up in memory otherwise), and
    /// keeps answering everyone else.
    @Test func clientsThatNeverReadTheirAnswersCannotGrowMemory() async throws {
        let tree = FakeTree.powercap()
        let port = freePort()
        let daemon = try Daemon(tree.sysfsArguments + ["--listen", "127.0.0.1:\(port)", "--duration", "60"])
        try await daemon.waitSampling()
        let pid = daemon.process.processIdentifier
        let warm = try RawConnection(port: port)
        warm.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = warm.readResponse()
        let before = residentKB(pid)
        let requests = Array(String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 5000).utf8)
        var readers: [RawConnection] = []
        var sent = 0
        for _ in 0..<10 {
            let c = try RawConnection(port: port)
            readers.append(c)
            // What the kernel takes at once; then again once the endpoint has read some.
            sent += c.sendWithoutWaiting(requests)
        }
        try await Task.sleep(for: .seconds(1))  // another process: time for it to answer what it read
        for c in readers { sent += c.sendWithoutWaiting(Array(requests.prefix(requests.count / 2))) }
        try await Task.sleep(for: .seconds(1))
        let (answer, took) = try bestOfThreeScrapes(port)
        let after = residentKB(pid)
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        #expect(sent > 10 * 100_000, "the clients sent \(sent) bytes of requests")
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer.prefix(200))")
        #expect(took < .milliseconds(100), "\(took)")
        #expect(after - before < 8 * 1024, "RSS grew from \(before) kB to \(after) kB")
    }
}

extension ListenAddress {
    func with(port: Int) -> ListenAddress {
        var copy = self
        copy.port = port
        return copy
    }
}
