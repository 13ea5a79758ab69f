import Foundation
import TestSupport
import Testing

@testable import Exporter

/// A self-signed certificate for 127.0.0.1, made with openssl for this test run.
final class SelfSigned: Sendable {
    let directory: String
    var certificate: String { directory + "/cert.pem" }
    var key: String { directory + "/key.pem" }

    init() async throws {
        directory = NSTemporaryDirectory() + "rapl-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let result = try await Binary.run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=rapl-test",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:receiver.test",
                "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem",
            ])
        guard result.status == 0 else { throw TimeoutError(description: "openssl failed: \(result.stderr)") }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func file(_ name: String, _ content: String) throws -> String {
        let path = directory + "/" + name
        try content.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }
}

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "needs openssl to make a certificate"))
struct TLSAndAuthTests {
    func tree() -> FakeTree { .powercap() }

    func daemon(_ tree: FakeTree, _ args: [String], seconds: Double = 1.5) throws -> Daemon {
        try Daemon(tree.sysfsArguments + ["--scrape-interval", "0.05", "--push-interval", "0.3", "--duration", String(seconds)] + args)
    }

    @Test func httpsWithACustomCABasicAuthAndATenantHeader() async throws {
        let pki = try await SelfSigned()
        let password = try pki.file("password", "s3cr3t-Pässword\n")
        let receiver = try await ScriptedReceiver([], tls: (pki.certificate, pki.key))
        let tree = tree()
        let d = try daemon(
            tree,
            [
                "--remote-write-url", receiver.httpsURL, "--tls-ca-file", pki.certificate,
                "--basic-auth-username", "instance-42", "--basic-auth-password-file", password,
                "--header", "X-Scope-OrgID: tenant-a", "--log-level", "debug",
            ])
        #expect(try await d.waitExit() == 0, "\(d.log)")
        await receiver.shutdown()
        let requests = receiver.requests
        try #require(!requests.isEmpty, "\(d.log)")
        let expected = "Basic " + Data("instance-42:s3cr3t-Pässword".utf8).base64EncodedString()
        #expect(requests.allSatisfy { $0.header("Authorization") == expected })
        #expect(requests.allSatisfy { $0.header("X-Scope-OrgID") == "tenant-a" })
        #expect(requests.allSatisfy { $0.writeRequest != nil })
        #expect(!d.log.contains("s3cr3t"), "the password is never logged")
        #expect(d.log.contains("everything delivered"))
    }

    @Test func bearerTokenIsReadAtEveryPushSoRotationWorks() async throws {
        let pki = try await SelfSigned()
        let token = try pki.file("token", "first-token\n")
        let receiver = try await ScriptedReceiver([], tls: (pki.certificate, pki.key))
        let tree = tree()
        // An IP URL, verified against the certificate's DNS name.
        let d2 = try daemon(
            tree,
            [
                "--remote-write-url", receiver.httpsURL, "--tls-server-name", "receiver.test",
                "--tls-ca-file", pki.certificate, "--bearer-token-file", token,
            ], seconds: 60)
        try await d2.waitSampling()
        try await waitUntil("a first push") { !receiver.requests.isEmpty }
        try "second-token\n".write(toFile: token, atomically: false, encoding: .utf8)
        // Pushes every 0.3 s: the next ones carry the new token (stopped then, not after a fixed time that
        // a loaded machine could spend before the first push).
        try await waitUntil("a push with the new token") { receiver.requests.contains { $0.header("Authorization") == "Bearer second-token" } }
        d2.process.terminate()
        #expect(try await d2.waitExit() == 0, "\(d2.log)")
        await receiver.shutdown()
        let tokens = receiver.requests.compactMap { $0.header("Authorization") }
        #expect(tokens.first == "Bearer first-token")
        #expect(tokens.last == "Bearer second-token")
        #expect(!d2.log.contains("first-token") && !d2.log.contains("second-token"))
    }

    @Test func anUntrustedCertificateIsRefusedAndSaysWhy() async throws {
        let pki = try await SelfSigned()
        let receiver = try await ScriptedReceiver([], tls: (pki.certificate, pki.key))
        let tree = tree()
        let d = try daemon(tree, ["--remote-write-url", receiver.httpsURL, "--shutdown-timeout", "0.5"], seconds: 1)
        #expect(try await d.waitExit() == 0, "\(d.log)")
        await receiver.shutdown()
        #expect(receiver.requests.isEmpty, "no request crosses an unverified connection")
        #expect(d.log.contains("TLS"), "\(d.log)")
        #expect(d.log.contains("could not be delivered"))
    }

    @Test(arguments: [
        (["--basic-auth-username", "u"], "basic auth needs both"),
        (["--bearer-token-file", "/nonexistent/t", "--basic-auth-username", "u", "--basic-auth-password-file", "/x"], "not both"),
        (["--header", "Authorization: Bearer x"], "header 'Authorization' is set by rapl-exporter itself"),
        (["--header", "no colon"], "invalid header 'no colon'"),
        (["--tls-ca-file", "/etc/hostname"], "TLS options are set but the remote-write URL"),
    ])
    func badConnectionOptionsExitTwo(_ args: [String], _ message: String) async throws {
        let result = try await Binary.run(Binary.path, ["--remote-write-url", "http://127.0.0.1:9/api/v1/write"] + args)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }

    @Test func aBadCAFileExitsTwo() async throws {
        let result = try await Binary.run(Binary.path, ["--remote-write-url", "https://127.0.0.1:9/api/v1/write", "--tls-ca-file", "/etc/hostname"])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(
            result.stderr.contains("cannot load the CA file (--tls-ca-file, REMOTE_WRITE_TLS_CA_FILE) /etc/hostname: not a PEM certificate file"),
            "\(result.stderr)")
    }

    @Test func base64() {
        #expect(Base64.encode(Array("".utf8)) == "")
        #expect(Base64.encode(Array("f".utf8)) == "Zg==")
        #expect(Base64.encode(Array("fo".utf8)) == "Zm8=")
        #expect(Base64.encode(Array("foobar".utf8)) == "Zm9vYmFy")
    }
}
