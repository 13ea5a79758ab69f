import Foundation
import TestSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Real receivers for the integration tests: Debian's prometheus 2.42 and victoria-metrics 1.79,
/// unpacked by scripts/install-receivers into .build-receivers/. Loopback only, a free port each, a
/// temp storage dir; stopped by the test that starts them.
enum Receivers {
    static let directory: String = {
        if let env = ProcessInfo.processInfo.environment["RAPL_TEST_RECEIVERS"] { return env }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build-receivers/usr/bin").path
    }()

    static var prometheus: String { directory + "/prometheus" }
    /// Debian sid's Prometheus 3.5 and VictoriaMetrics 1.145 (scripts/install-receivers).
    static var prometheus3: String { directory + "/../../sid/root/usr/bin/prometheus" }
    static var victoriaMetrics145: String { directory + "/../../sid/root/usr/bin/victoria-metrics" }
    static var victoriaMetrics: String { directory + "/victoria-metrics" }
    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: prometheus) && FileManager.default.isExecutableFile(atPath: victoriaMetrics)
            && FileManager.default.isExecutableFile(atPath: prometheus3) && FileManager.default.isExecutableFile(atPath: victoriaMetrics145)
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    _ = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

func httpGet(_ url: String) async throws -> (Int, Data) {
    var request = URLRequest(url: URL(string: url)!)
    request.timeoutInterval = 5
    let (data, response) = try await URLSession.shared.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
}

func urlEncode(_ s: String) -> String {
    s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))!
}

struct TimeoutError: Error, CustomStringConvertible {
    var description: String
}

/// Polls `condition` every 50 ms for at most `seconds`: for waiting on another process, which has no
/// signal to inject.
func waitUntil(_ what: String, seconds: Double = 30, _ condition: () async -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TimeoutError(description: "timed out after \(seconds) s waiting for \(what)")
}

/// A receiver process.
final class ReceiverProcess: @unchecked Sendable {
    enum Kind: Sendable, CustomStringConvertible {
        /// Prometheus 2.42 (bookworm), Prometheus 3.5 (sid), VictoriaMetrics 1.79 (bookworm) and 1.145 (sid).
        case prometheus, prometheus3, victoriaMetrics, victoriaMetrics145
        var description: String {
            switch self {
            case .prometheus: "prometheus 2.42"
            case .prometheus3: "prometheus 3.5"
            case .victoriaMetrics: "victoria-metrics 1.79"
            case .victoriaMetrics145: "victoria-metrics 1.145"
            }
        }
        var isPrometheus: Bool { self == .prometheus || self == .prometheus3 }
    }

    /// What Prometheus scrapes (job `rapl`, every second): the address, and for https the CA to trust
    /// and the basic-auth credentials to send.
    struct ScrapeTarget: Sendable {
        var address: String
        var caFile: String? = nil
        var basicAuth: (user: String, password: String)? = nil
    }
    let kind: Kind
    let port: Int
    let storage: String
    private var process: Process?
    private let log: String

    /// Prometheus only: what it scrapes every second (job `rapl`), if anything.
    let scrapeTarget: ScrapeTarget?

    init(_ kind: Kind, scraping target: ScrapeTarget? = nil) throws {
        self.kind = kind
        self.scrapeTarget = target
        self.port = freePort()
        storage = NSTemporaryDirectory() + "rapl-receiver-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        log = storage + ".log"
        try start()
    }

    deinit {
        stopNow()
        try? FileManager.default.removeItem(atPath: storage)
        try? FileManager.default.removeItem(atPath: log)
    }

    var writeURL: String { "http://127.0.0.1:\(port)/api/v1/write" }

    func start() throws {
        let p = Process()
        switch kind {
        case .prometheus, .prometheus3:
            let config = storage + "/prometheus.yml"
            var yaml = "global:\n  scrape_interval: 1h\n"
            if let scrapeTarget {
                yaml += "scrape_configs:\n  - job_name: rapl\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n"
                yaml += "    static_configs:\n      - targets: ['\(scrapeTarget.address)']\n"
                if let ca = scrapeTarget.caFile { yaml += "    scheme: https\n    tls_config:\n      ca_file: '\(ca)'\n" }
                if let (user, password) = scrapeTarget.basicAuth {
                    yaml += "    basic_auth:\n      username: '\(user)'\n      password: '\(password)'\n"
                }
            }
            try yaml.write(toFile: config, atomically: true, encoding: .utf8)
            p.executableURL = URL(fileURLWithPath: kind == .prometheus ? Receivers.prometheus : Receivers.prometheus3)
            p.arguments = [
                "--config.file=\(config)", "--storage.tsdb.path=\(storage)/data",
                "--web.listen-address=127.0.0.1:\(port)", "--web.enable-remote-write-receiver",
            ]
            if kind == .prometheus3 {
                // Remote write 2.0 is accepted only when asked for, the flag given once per message.
                p.arguments! += [
                    "--web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest",
                    "--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request",
                ]
            }
        case .victoriaMetrics, .victoriaMetrics145:
            p.executableURL = URL(fileURLWithPath: kind == .victoriaMetrics ? Receivers.victoriaMetrics : Receivers.victoriaMetrics145)
            p.arguments = ["-storageDataPath=\(storage)/data", "-httpListenAddr=127.0.0.1:\(port)", "-search.latencyOffset=0s"]
        }
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        process = p
    }

    /// Stops the receiver; the wait for its exit runs on a thread of its own, not on the (small)
    /// cooperative pool that the other tests share.
    func stop() async {
        guard let p = process, p.isRunning else { return }
        p.terminate()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread {
                p.waitUntilExit()
                continuation.resume()
            }.start()
        }
        process = nil
    }

    private func stopNow() {
        guard let p = process, p.isRunning else { return }
        p.terminate()
        p.waitUntilExit()
    }

    func waitReady() async throws {
        let path = kind.isPrometheus ? "/-/ready" : "/health"
        try await waitUntil("\(kind) on port \(port) to be ready") {
            (try? await httpGet("http://127.0.0.1:\(port)\(path)").0) == 200
        }
    }

    /// Prometheus only: the value of the instant query `expression` at `time` (Unix seconds), if any.
    func query(_ expression: String, at time: Double) async throws -> Double? {
        try await vector(expression, at: time).first?.value
    }

    /// Prometheus only: the series (labels, value) of the instant query `expression` at `time`.
    func vector(_ expression: String, at time: Double) async throws -> [(labels: [String: String], value: Double)] {
        let (status, data) = try await httpGet(
            "http://127.0.0.1:\(port)/api/v1/query?query=\(urlEncode(expression))&time=\(String(format: "%.3f", time))")
        guard status == 200, let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let result = (json["data"] as? [String: Any])?["result"] as? [[String: Any]]
        else { throw TimeoutError(description: "bad prometheus answer \(status) to \(expression): \(String(decoding: data, as: UTF8.self))") }
        return result.compactMap { series in
            guard let value = series["value"] as? [Any], let text = value.last as? String, let number = Double(text) else { return nil }
            return (series["metric"] as? [String: String] ?? [:], number)
        }
    }

    /// Prometheus only: the values of `label` on the series matching `match` (what Grafana's
    /// `label_values(match, label)` variable query asks).
    func labelValues(_ label: String, match: String) async throws -> [String] {
        let (status, data) = try await httpGet("http://127.0.0.1:\(port)/api/v1/label/\(label)/values?match%5B%5D=\(urlEncode(match))")
        guard status == 200, let json = try JSONSerialization.jsonObject(with: data) as? [String: Any], let values = json["data"] as? [String] else {
            throw TimeoutError(description: "bad prometheus answer \(status) to label \(label): \(String(decoding: data, as: UTF8.self))")
        }
        return values
    }

    /// Raw samples (ms timestamp, value) of the series matching `selector`, oldest first.
    func samples(_ selector: String) async throws -> [(Int64, Double)] {
        switch kind {
        case .prometheus, .prometheus3:
            let (status, data) = try await httpGet("http://127.0.0.1:\(port)/api/v1/query?query=\(urlEncode(selector + "[1h]"))")
            guard status == 200, let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                let result = (json["data"] as? [String: Any])?["result"] as? [[String: Any]]
            else {
                throw TimeoutError(description: "bad prometheus answer \(status): \(String(decoding: data, as: UTF8.self))")
            }
            return result.flatMap { series in
                (series["values"] as? [[Any]] ?? []).map { pair in
                    (Int64(((pair[0] as? Double) ?? 0) * 1000 + 0.5), Double(pair[1] as! String)!)
                }
            }.sorted { $0.0 < $1.0 }
        case .victoriaMetrics, .victoriaMetrics145:
            _ = try await httpGet("http://127.0.0.1:\(port)/internal/force_flush")
            let (status, data) = try await httpGet("http://127.0.0.1:\(port)/api/v1/export?match%5B%5D=\(urlEncode(selector))")
            guard status == 200 else { throw TimeoutError(description: "bad victoria-metrics answer \(status)") }
            var out: [(Int64, Double)] = []
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                guard let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let values = json["values"] as? [Any], let timestamps = json["timestamps"] as? [Any]
                else { continue }
                for (t, v) in zip(timestamps, values) {
                    out.append(((t as? NSNumber)?.int64Value ?? 0, (v as? NSNumber)?.doubleValue ?? .nan))
                }
            }
            return out.sorted { $0.0 < $1.0 }
        }
    }
}

/// The daemon as a child process over a fake tree, its stderr in a file.
final class Daemon: @unchecked Sendable {
    let process = Process()
    let logPath = NSTemporaryDirectory() + "rapl-daemon-\(UUID().uuidString).log"

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: Binary.path)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let handle = FileHandle(forWritingAtPath: logPath)
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(atPath: logPath)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// After this line the first reading has been taken: counter changes from now on are measured.
    func waitSampling() async throws {
        try await waitUntil("the daemon to start sampling") { log.contains("sampling every") || !process.isRunning }
        if !log.contains("sampling every") { throw TimeoutError(description: "daemon exited early: \(log)") }
    }

    func waitExit(seconds: Double = 60) async throws -> Int32 {
        try await waitUntil("the daemon to exit", seconds: seconds) { !process.isRunning }
        return process.terminationStatus
    }

    /// The number of windows the daemon closed, from its last log line.
    var windowCount: Int? {
        guard let range = log.range(of: "sampling stopped after ") else { return nil }
        return Int(log[range.upperBound...].prefix { $0.isNumber })
    }
}
