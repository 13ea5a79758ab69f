import Foundation
import HummingbirdBcrypt
import NIOPosix
import TestSupport
import Testing

@testable import Exporter

/// The /metrics endpoint with a web configuration file: TLS (a renewed certificate served without a
/// restart), client certificates, basic auth — checked with curl, a client the server's code did not write.
@Suite(
    .enabled(
        if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") && FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"),
        "needs openssl and curl"))
struct MetricsEndpointSecurityTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    func server(_ web: WebConfig) throws -> MetricsServer {
        let context = ScrapeContext(nameStyle: .seed, version: "1.2.3", backend: "sysfs", startTimeSeconds: 1_700_000_000.5, process: nil)
        return try MetricsServer(
            address: ListenAddress("127.0.0.1:1024")!.with(port: 0), eventLoop: loop, state: ScrapeState(), context: context, health: nil, web: web)
    }

    /// curl's status code (0 when no HTTP answer came: a refused handshake), headers and body.
    func curl(_ url: String, _ options: [String] = []) async throws -> (status: Int, headers: String, body: String) {
        let result = try await Binary.run(
            "/usr/bin/curl", ["-sS", "--max-time", "10", "-D", "-", "-o", "-", "-w", "\n%{http_code}"] + options + [url])
        var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.popLast() ?? "") ?? 0
        let text = lines.joined(separator: "\n")
        let split = text.range(of: "\r\n\r\n")
        return (status, split.map { String(text[..<$0.lowerBound]) } ?? "", split.map { String(text[$0.upperBound...]) } ?? text)
    }

    func tlsConfig(_ pki: SelfSigned, extra: String = "") throws -> WebConfig {
        try WebConfig.parse(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n" + extra, file: "web.yml", directory: pki.directory + "/")
    }

    /// Replaces `path` by a new file (rename, as cert-manager and most tools do).
    func replace(_ path: String, with source: String) throws {
        let temporary = path + ".new"
        try? FileManager.default.removeItem(atPath: temporary)
        try FileManager.default.copyItem(atPath: source, toPath: temporary)
        #expect(rename(temporary, path) == 0)
    }

    @Test func httpsServesTheEndpointAndARenewedCertificateWithoutARestart() async throws {
        let pki = try await SelfSigned()
        let original = try pki.file("original.pem", String(contentsOfFile: pki.certificate, encoding: .utf8))
        let server = try server(try tlsConfig(pki))
        #expect(server.tls)
        let url = "https://127.0.0.1:\(server.address.port)/metrics"
        let first = try await curl(url, ["--cacert", pki.certificate])
        #expect(first.status == 200, "\(first)")
        #expect(first.body.contains("rapl_exporter_build_info"))
        let plain = try await curl("http://127.0.0.1:\(server.address.port)/metrics")
        #expect(plain.status != 200, "no plain HTTP on a TLS endpoint")

        let renewed = try await SelfSigned()
        try replace(pki.key, with: renewed.key)
        try replace(pki.certificate, with: renewed.certificate)
        let after = try await curl(url, ["--cacert", renewed.certificate])
        #expect(after.status == 200, "the new certificate is served from the next connection on: \(after)")
        let old = try await curl(url, ["--cacert", original])
        #expect(old.status == 0, "the old certificate is gone")
        try await server.close()
    }

    @Test func aHalfWrittenRenewalKeepsServingThePreviousCertificate() async throws {
        let pki = try await SelfSigned()
        let original = try String(contentsOfFile: pki.certificate, encoding: .utf8)
        let server = try server(try tlsConfig(pki))
        let url = "https://127.0.0.1:\(server.address.port)/metrics"
        // A new key whose certificate has not arrived yet: the pair does not load.
        let renewed = try await SelfSigned()
        try replace(pki.key, with: renewed.key)
        let during = try await curl(url, ["--cacert", try pki.file("original.pem", original)])
        #expect(during.status == 200, "the previous certificate is still served: \(during)")
        try replace(pki.certificate, with: renewed.certificate)
        let after = try await curl(url, ["--cacert", renewed.certificate])
        #expect(after.status == 200, "and the completed renewal is picked up: \(after)")
        try await server.close()
    }

    @Test func clientCertificatesAreRequiredAndVerified() async throws {
        let pki = try await SelfSigned()
        let client = try await SelfSigned()
        let stranger = try await SelfSigned()
        let required = try server(
            try tlsConfig(pki, extra: "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: \(client.certificate)\n"))
        let url = "https://127.0.0.1:\(required.address.port)/metrics"
        #expect(try await curl(url, ["--cacert", pki.certificate]).status == 0, "no certificate: refused")
        #expect(try await curl(url, ["--cacert", pki.certificate, "--cert", stranger.certificate, "--key", stranger.key]).status == 0)
        #expect(try await curl(url, ["--cacert", pki.certificate, "--cert", client.certificate, "--key", client.key]).status == 200)
        try await required.close()

        let optional = try server(try tlsConfig(pki, extra: "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: \(client.certificate)\n"))
        let url2 = "https://127.0.0.1:\(optional.address.port)/metrics"
        #expect(try await curl(url2, ["--cacert", pki.certificate]).status == 200, "none given: let in")
        #expect(try await curl(url2, ["--cacert", pki.certificate, "--cert", stranger.certificate, "--key", stranger.key]).status == 0)
        try await optional.close()
    }

    @Test func basicAuthGuardsEveryPathWithBcryptHashes() async throws {
        // alice: PHP's documented $2y$ example (htpasswd writes $2y$ too); bob: a $2b$ hash made now.
        let web = try WebConfig.parse(
            """
            basic_auth_users:
              alice: $2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a
              bob: \(Bcrypt.hash("bob's pässword", cost: 4))
            http_server_config:
              headers:
                X-Frame-Options: deny
            """, file: "web.yml")
        let server = try server(web)
        let base = "http://127.0.0.1:\(server.address.port)"
        let anonymous = try await curl(base + "/metrics")
        #expect(anonymous.status == 401)
        #expect(anonymous.headers.contains("WWW-Authenticate: Basic realm=\"rapl-exporter\""), "\(anonymous.headers)")
        #expect(anonymous.headers.contains("X-Frame-Options: deny"), "the configured headers are on every answer")
        #expect(try await curl(base + "/metrics", ["-u", "alice:rasmuslerdorg"]).status == 401)
        #expect(try await curl(base + "/metrics", ["-u", "carol:rasmuslerdorf"]).status == 401, "an unknown user")
        #expect(try await curl(base + "/healthz").status == 401)
        for _ in 0..<2 {  // the second time from the verified-password cache
            let alice = try await curl(base + "/metrics", ["-u", "alice:rasmuslerdorf"])
            #expect(alice.status == 200)
            #expect(alice.headers.contains("X-Frame-Options: deny"))
            #expect(alice.body.contains("rapl_exporter_build_info"))
        }
        #expect(try await curl(base + "/", ["-u", "bob:bob's pässword"]).status == 200)
        #expect(try await curl(base + "/metrics", ["-u", "alice:rasmuslerdorfX"]).status == 401, "the cache holds the exact password only")
        try await server.close()
    }
}
