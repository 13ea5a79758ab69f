import Foundation
import TestSupport
import Testing

@testable import Exporter

/// Bad input is refused at start (exit 2, one line, no secret echoed), not accepted and then failing
/// every push; signals, a full stdout and a planted health file behave. Through the real binary.
@Suite struct HardeningTests {
    static let url = "http://127.0.0.1:9/api/v1/write"

    func tree() -> FakeTree { .powercap() }

    /// A temporary file with `bytes`.
    func file(_ bytes: [UInt8], mode: mode_t = 0o600) -> String {
        let path = NSTemporaryDirectory() + "rapl-secret-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        chmod(path, mode)
        return path
    }

    func expectRefused(_ args: [String], _ env: [String: String] = [:], _ message: String, notContaining secret: String? = nil) async throws {
        let result = try await Binary.run(Binary.path, args, environment: env)
        #expect(result.status == 2, "\(args) \(env): \(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.last?.contains(message) == true, "\(result.stderr)")
        #expect(lines.filter { $0.hasPrefix("rapl-exporter:") }.count == 1, "\(result.stderr)")
        if let secret { #expect(!result.stderr.contains(secret), "\(result.stderr)") }
    }

    @Test(arguments: [
        ([String](), ["REMOTE_WRITE_URL": "http://127.0.0.1:9/api/v1/write\r\nX-Evil: 1"], "invalid remote-write URL"),
        ([], ["REMOTE_WRITE_URL": "http://127.0.0.1:9/api v1/write"], "invalid remote-write URL"),
        ([], ["REMOTE_WRITE_URL": "http://127.0.0.1:9/ä"], "invalid remote-write URL"),
        (["--remote-write-url", url, "--header", "X-Scope-OrgID: a\rb"], [:], "invalid header"),
        ([], ["REMOTE_WRITE_URL": url, "REMOTE_WRITE_HEADERS": "X-A: b\u{7f}c"], "invalid header"),
        (["--remote-write-url", url, "--label", "node=a", "--label", "node=b"], [:], "label 'node' is given twice"),
        ([], ["REMOTE_WRITE_URL": url, "EXTRA_LABELS": "node=a,node=b"], "label 'node' is given twice"),
        (["--remote-write-url", url, "--label", "node=a\u{1b}[31m"], [:], "the value must be UTF-8 text without control characters"),
        ([], ["SERVICE_LABEL": "lab\nforged log line"], "invalid service label"),
        ([], ["EXPORT_CUMULATIVE": "banana"], "invalid EXPORT_CUMULATIVE 'banana'"),
        (
            [], ["REMOTE_WRITE_URL": "https://127.0.0.1:9/w", "REMOTE_WRITE_TLS_INSECURE_SKIP_VERIFY": "sure"],
            "invalid REMOTE_WRITE_TLS_INSECURE_SKIP_VERIFY 'sure'"
        ),
        (["--duration", "-1"], [:], "invalid duration '-1' (--duration or RUN_DURATION_S): expected a number of seconds > 0"),
        (["--scrape-interval", "-0.5"], [:], "invalid scrape-interval '-0.5'"),
        ([], ["MAX_DOMAIN_POWER_W": "0"], "invalid max-domain-power '0'"),
        // Checked with --output stdout too: an option given wrongly is an error whatever the output.
        (["--output", "stdout", "--remote-write-url", "ftp://x/w"], [:], "invalid remote-write URL"),
        (["--output", "stdout", "--remote-write-url", url, "--header", "bad"], [:], "invalid header"),
        (
            ["--remote-write-url", url, "--basic-auth-username", "a:b", "--basic-auth-password-file", "/etc/hostname"], [:],
            "invalid basic-auth user name"
        ),
    ])
    func refusedAtStart(_ args: [String], _ env: [String: String], _ message: String) async throws {
        try await expectRefused(args, env, message)
    }

    @Test func aURLsPasswordIsNotEchoed() async throws {
        try await expectRefused(
            [], ["REMOTE_WRITE_URL": "https://user:hunter2secret@example.com/api/v1/write?token=abcdef123"],
            "invalid remote-write URL 'https://user:***@example.com/api/v1/write?token=***'", notContaining: "hunter2secret")
        #expect(RemoteWriteEndpoint("https://h/w?api_key=s3cret&x")!.description == "https://h:443/w?api_key=***&x=***")
    }

    /// Token files that would fail every push are refused at start: CR/LF or NUL inside, empty, a
    /// device, a FIFO (which would make start-up hang), missing.
    @Test func badTokenFilesAreRefusedAtStart() async throws {
        let tree = tree()
        let fifo = NSTemporaryDirectory() + "rapl-fifo-\(UUID().uuidString)"
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let cases: [(String, String)] = [
            (file(Array("tok\r\nen\n".utf8)), "holds a NUL, CR or LF byte"),
            (file(Array("tok\u{0}en".utf8)), "holds a NUL, CR or LF byte"),
            (file([]), "is empty"),
            (file(Array("\n".utf8)), "is empty"),
            (file([0xFF, 0xFE, 0x41]), "not one line of UTF-8 text"),
            ("/dev/zero", "not a regular file"),
            (fifo, "not a regular file"),
            ("/nonexistent/token", "No such file or directory"),
        ]
        for (path, message) in cases {
            try await expectRefused(
                tree.sysfsArguments + ["--remote-write-url", Self.url, "--bearer-token-file", path],
                [:], message
            )
        }
        // A good token with a final CRLF is fine (the daemon starts and stops).
        let good = file(Array("token-value\r\n".utf8))
        let result = try await Binary.run(
            Binary.path,
            tree.sysfsArguments + ["--remote-write-url", Self.url, "--bearer-token-file", good, "--duration", "0.3", "--shutdown-timeout", "0.2"])
        #expect(result.status == 0, "\(result.stderr)")
    }

    /// A password file only CAP_DAC_OVERRIDE can read (another user's, mode 0600) passes while root
    /// holds its capabilities; the daemon reads it at every push after dropping them all, so the start
    /// check is made then, as that process: exit 2 at start, not a failure at every push.
    @Test(.enabled(if: getuid() == 0, "needs root to hand a file to another user"))
    func aSecretReadableOnlyWithADroppedCapabilityIsRefusedAtStart() async throws {
        let tree = tree()
        let secret = file(Array("pw\n".utf8), mode: 0o600)
        #expect(chown(secret, 65534, 65534) == 0)
        try await expectRefused(
            tree.sysfsArguments + [
                "--remote-write-url", Self.url,
                "--basic-auth-username", "u", "--basic-auth-password-file", secret,
            ],
            [:], "Permission denied (checked as the unprivileged process that reads it at every push)"
        )
        // With the capabilities kept, the same file is readable at every push, so it is accepted.
        let kept = try await Binary.run(
            Binary.path,
            tree.sysfsArguments + [
                "--remote-write-url", Self.url, "--keep-capabilities",
                "--basic-auth-username", "u", "--basic-auth-password-file", secret, "--duration", "0.3", "--shutdown-timeout", "0.2",
            ])
        #expect(kept.status == 0, "\(kept.stderr)")
    }

    /// The endpoint's web configuration and its key are read by the process that serves, which has no
    /// capability left: a file only root's CAP_DAC_OVERRIDE could read is refused at start.
    @Test(.enabled(if: getuid() == 0, "needs root to hand a file to another user"))
    func aWebConfigOrKeyReadableOnlyWithADroppedCapabilityIsRefusedAtStart() async throws {
        let tree = tree()
        let key = file(Array("-----BEGIN PRIVATE KEY-----\n".utf8), mode: 0o600)
        #expect(chown(key, 65534, 65534) == 0)
        let web = file(Array("tls_server_config:\n  cert_file: /etc/hostname\n  key_file: \(key)\n".utf8), mode: 0o644)
        try await expectRefused(
            tree.sysfsArguments + ["--listen", "127.0.0.1:65001", "--web.config.file", web], [:],
            "web configuration: the endpoint's TLS certificate, key or client CA does not load: open \(key): Permission denied")
        #expect(chown(web, 65534, 65534) == 0)
        #expect(chmod(web, 0o600) == 0)
        try await expectRefused(
            tree.sysfsArguments + ["--listen", "127.0.0.1:65001"], ["WEB_CONFIG_FILE": web],
            "cannot read the web configuration file: open \(web): Permission denied (--web.config.file or WEB_CONFIG_FILE)")
    }

    @Test func aWebConfigThatCannotBeHonouredExitsTwo() async throws {
        let tree = tree()
        let web = file(Array("basic_auth_users:\n  alice: hunter2\n".utf8), mode: 0o644)
        try await expectRefused(
            tree.sysfsArguments + ["--listen", "127.0.0.1:65001", "--web.config.file", web], [:],
            "web configuration \(web): basic_auth_users.alice: not a bcrypt hash", notContaining: "hunter2")
        try await expectRefused(
            tree.sysfsArguments + ["--listen", "127.0.0.1:65001", "--web.config.file", "/nonexistent/web.yml"], [:],
            "cannot read the web configuration file: open /nonexistent/web.yml: No such file or directory")
    }

    @Test func aCAFileThatCannotBeReadSaysWhichAndWhy() async throws {
        try await expectRefused(
            ["--remote-write-url", "https://127.0.0.1:9/w", "--tls-ca-file", "/nonexistent/ca.pem"], [:],
            "cannot load the CA file (--tls-ca-file, REMOTE_WRITE_TLS_CA_FILE) /nonexistent/ca.pem: open /nonexistent/ca.pem: No such file or directory"
        )
    }

    /// stdout that cannot be written (here /dev/full) is reported once, and the daemon exits 1.
    @Test(arguments: [
        (">/dev/full", "cannot write to standard output: No space left on device"), (">&-", "cannot write to standard output: it is closed"),
    ])
    func aFullOrClosedStdoutIsReportedAndExitsNonZero(_ redirect: String, _ message: String) async throws {
        let tree = tree()
        let result = try await Binary.run(
            "/bin/sh",
            [
                "-c", "exec \"$0\" \"$@\" \(redirect)", Binary.path,
                "--sysfs-root", tree.sys, "--backend", "sysfs", "--scrape-interval", "0.05", "--duration", "5",
            ])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
        // Said once (a full stdout: and once more in the exit line), not once per window.
        #expect(result.stderr.components(separatedBy: "cannot write to standard output").count <= 3, "\(result.stderr)")
    }

    /// SIGHUP shuts down gracefully like SIGTERM; a second signal during the shutdown exits at once
    /// (128 + signal), after counting what is dropped.
    @Test func sighupIsGracefulAndASecondSignalExitsAtOnce() async throws {
        let tree = tree()
        let hup = try Daemon(tree.sysfsArguments + ["--scrape-interval", "0.05"])
        try await hup.waitSampling()
        kill(hup.process.processIdentifier, SIGHUP)
        #expect(try await hup.waitExit(seconds: 10) == 0, "\(hup.log)")
        #expect(hup.log.contains("SIGHUP: shutting down"), "\(hup.log)")
        #expect(hup.windowCount != nil)

        // A receiver that never answers, a long request timeout and shutdown timeout: the flush would
        // wait; the second SIGTERM does not.
        let (receiver, term) = try await daemonWithARequestInFlight(tree, requestTimeout: "60", shutdownTimeout: "60")
        let start = Date()
        kill(term.process.processIdentifier, SIGTERM)
        try await waitUntil("the shutdown to begin") { term.log.contains("SIGTERM: shutting down") }
        kill(term.process.processIdentifier, SIGTERM)
        #expect(try await term.waitExit(seconds: 10) == 128 + SIGTERM, "\(term.log)")
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(term.log.contains("second signal: stopping now"), "\(term.log)")
        await receiver.shutdown()
    }

    /// A daemon pushing to a receiver that never answers, once its first request is in flight.
    func daemonWithARequestInFlight(_ tree: FakeTree, requestTimeout: String, shutdownTimeout: String) async throws -> (ScriptedReceiver, Daemon) {
        let receiver = try await ScriptedReceiver(Array(repeating: .hang, count: 20))
        let daemon = try Daemon(
            tree.sysfsArguments + [
                "--scrape-interval", "0.05", "--push-interval", "0.2", "--remote-write-url", receiver.url,
                "--request-timeout", requestTimeout, "--shutdown-timeout", shutdownTimeout,
            ])
        try await daemon.waitSampling()
        try await waitUntil("a request in flight") { !receiver.requests.isEmpty }
        return (receiver, daemon)
    }

    /// A request in flight at SIGTERM does not add its timeout to the shutdown timeout.
    @Test func shutdownIsBoundedByTheShutdownTimeout() async throws {
        let tree = tree()
        let (receiver, d) = try await daemonWithARequestInFlight(tree, requestTimeout: "30", shutdownTimeout: "1.5")
        let start = Date()
        kill(d.process.processIdentifier, SIGTERM)
        #expect(try await d.waitExit(seconds: 20) == 0, "\(d.log)")
        let took = Date().timeIntervalSince(start)
        #expect(took < 1.5 + 1.0, "shutdown took \(took) s")
        #expect(d.log.contains("could not be delivered within"), "\(d.log)")
        await receiver.shutdown()
    }

    /// A receiver that echoes the credentials in its error body does not get them into the log.
    @Test func receiverBodiesAreLoggedWithoutTheCredentialsSent() async throws {
        let tree = tree()
        let token = "s3cr3t-token-value"
        let receiver = try await ScriptedReceiver([
            .respond(401, [], "invalid bearer token \(token) for tenant OrgSecret-42 (header Bearer \(token))")
        ])
        let d = try Daemon(
            tree.sysfsArguments + [
                "--scrape-interval", "0.05", "--push-interval", "0.2", "--duration", "1",
                "--remote-write-url", receiver.url, "--bearer-token-file", file(Array((token + "\n").utf8)),
                "--header", "X-Scope-OrgID: OrgSecret-42",
            ])
        #expect(try await d.waitExit() == 0, "\(d.log)")
        await receiver.shutdown()
        #expect(receiver.requests.first?.header("Authorization") == "Bearer \(token)")
        #expect(d.log.contains("invalid bearer token <redacted> for tenant <redacted> (header <redacted>)"), "\(d.log)")
        #expect(!d.log.contains(token))
        #expect(!d.log.contains("OrgSecret-42"))
    }
}
