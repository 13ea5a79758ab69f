import HummingbirdBcrypt
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Testing

@testable import Exporter

/// The web configuration file (exporter-toolkit's format): the YAML it is written in, what it may set,
/// and what is refused at start rather than ignored.
@Suite struct WebConfigTests {
    @Test func theYAMLSubsetReadsWhatWebConfigFilesUse() throws {
        let text = """
            ---
            # a comment
            tls_server_config:
              cert_file: "server.crt"   # trailing comment
              key_file: 'it''s.key'
              cipher_suites: [TLS_AES_128_GCM_SHA256, "x # not a comment"]
              client_allowed_sans:
              - a.example
              -   b.example
              client_ca: |
                -----BEGIN-----
                  indented
                -----END-----
            basic_auth_users:
              "alice": $2y$10$abc#notacomment
              bob: "tab\\there \\u00e9"
            empty:
            """
        let node = try YAMLNode.parse(text)
        let expected = YAMLNode.mapping([
            (
                "tls_server_config",
                .mapping([
                    ("cert_file", .scalar("server.crt")),
                    ("key_file", .scalar("it's.key")),
                    ("cipher_suites", .sequence([.scalar("TLS_AES_128_GCM_SHA256"), .scalar("x # not a comment")])),
                    ("client_allowed_sans", .sequence([.scalar("a.example"), .scalar("b.example")])),
                    ("client_ca", .scalar("-----BEGIN-----\n  indented\n-----END-----\n")),
                ])
            ),
            ("basic_auth_users", .mapping([("alice", .scalar("$2y$10$abc#notacomment")), ("bob", .scalar("tab\there é"))])),
            ("empty", .null),
        ])
        #expect(node == expected)
        #expect(try YAMLNode.parse("# only a comment\n\n") == .null)
        #expect(try YAMLNode.parse("a:\n  - x\n  - y\nb: z\n") == .mapping([("a", .sequence([.scalar("x"), .scalar("y")])), ("b", .scalar("z"))]))
    }

    @Test(arguments: [
        ("a: &anchor x\n", 1, "anchors, aliases"),
        ("a: *alias\n", 1, "anchors, aliases"),
        ("a: {b: c}\n", 1, "flow mappings"),
        ("a: x\na: y\n", 2, "the key 'a' is given twice"),
        ("a:\n\tb: c\n", 2, "a tab in the indentation"),
        ("a: \"open\n", 1, "must end on its line"),
        ("a: b\n  c: d\n", 2, "unexpected indentation"),
        ("a: x\n---\nb: y\n", 2, "several documents"),
        ("a: >\n  folded\n", 1, "folded scalars"),
        ("a:\n  - b: c\n", 2, "a mapping inside a sequence item"),
        ("just text\n", 1, "expected 'key: value'"),
    ])
    func theYAMLSubsetRefusesWhatItDoesNotRead(_ text: String, _ line: Int, _ message: String) {
        #expect {
            _ = try YAMLNode.parse(text)
        } throws: { error in
            guard let error = error as? YAMLError else { return false }
            return error.line == line && error.message.contains(message)
        }
    }

    @Test func theToolkitsFieldsAreRead() throws {
        let config = try WebConfig.parse(
            """
            tls_server_config:
              cert_file: server.crt
              key_file: /abs/server.key
              client_auth_type: RequireAndVerifyClientCert
              client_ca_file: ca.crt
              min_version: TLS13
              cipher_suites:
                - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
              prefer_server_cipher_suites: true
            http_server_config:
              http2: false
              headers:
                X-Frame-Options: deny
                Strict-Transport-Security: max-age=31536000
            basic_auth_users:
              alice: $2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a
            """, file: "web.yml", directory: "/etc/rapl/")
        let tls = try #require(config.tls)
        #expect(tls.certificate == .file("/etc/rapl/server.crt"), "relative to the file's directory, as exporter-toolkit resolves it")
        #expect(tls.key == .file("/abs/server.key"))
        #expect(tls.clientCA == .file("/etc/rapl/ca.crt"))
        #expect(tls.clientAuth == .requireAndVerify)
        #expect(tls.minimumVersion == .tlsv13)
        #expect(tls.cipherSuites == [0xC02F])
        #expect(tls.files == ["/etc/rapl/server.crt", "/abs/server.key", "/etc/rapl/ca.crt"])
        #expect(config.headers.map(\.0) == ["Strict-Transport-Security", "X-Frame-Options"])
        #expect(config.basicAuthUsers.keys.sorted() == ["alice"])
        let empty = try WebConfig.parse("# nothing configured\n", file: "w")
        #expect(empty.tls == nil && empty.basicAuthUsers.isEmpty && empty.headers.isEmpty)
    }

    static let tls = "tls_server_config:\n  cert_file: c\n  key_file: k\n"

    @Test(arguments: [
        ("color: blue\n", "unknown key 'color' in the file"),
        ("tls_server_config:\n  cert_file: c\n", "needs a certificate and its key"),
        ("tls_server_config:\n  cert_file: c\n  cert: inline\n  key_file: k\n", "give cert_file or cert, not both"),
        (tls + "  client_auth_type: RequestClientCert\n", "asks for a certificate without verifying it and is not supported"),
        (tls + "  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
        (tls + "  client_ca_file: ca\n", "client_ca_file is set but client_auth_type is NoClientCert"),
        (tls + "  client_auth_type: Sometimes\n", "expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
        (tls + "  min_version: TLS13\n  max_version: TLS12\n", "max_version is below min_version"),
        (tls + "  min_version: SSL3\n", "expected TLS10, TLS11, TLS12 or TLS13"),
        (tls + "  cipher_suites: [TLS_FAKE]\n", "unknown or unsupported suite"),
        (tls + "  curve_preferences: [X25519]\n", "curve_preferences is not supported"),
        (tls + "  client_allowed_sans: [a]\n", "client_allowed_sans is not supported"),
        (tls + "  keyfile: k\n", "unknown key 'keyfile' in tls_server_config"),
        ("rate_limit:\n  interval: 1s\n", "rate_limit is not supported"),
        ("http_server_config:\n  headers:\n    X-Custom: 1\n", "unknown key 'X-Custom'"),
        ("http_server_config:\n  http2: maybe\n", "http2: expected true or false"),
        ("basic_auth_users:\n  alice: plain-text-password\n", "basic_auth_users.alice: not a bcrypt hash"),
        ("basic_auth_users:\n  alice: $2x$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a\n", "not a bcrypt hash"),
        ("basic_auth_users: [alice]\n", "expected user: bcrypt-hash lines"),
        ("tls_server_config: [x]\n", "tls_server_config: expected a mapping"),
        ("a: {b}\n", "line 1:"),
    ])
    func whatCannotBeHonouredIsRefused(_ text: String, _ message: String) {
        #expect {
            _ = try WebConfig.parse(text, file: "web.yml")
        } throws: { error in
            let description = (error as? ConfigurationError)?.description ?? ""
            return description.hasPrefix("web configuration web.yml: ") && description.contains(message)
        }
    }

    @Test func bcryptHashesFromHtpasswdAndPHPVerify() {
        // PHP's documented example (crypt_blowfish's $2y$, htpasswd's marker too).
        let php = "$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a"
        #expect(BcryptHash.isWellFormed(php))
        #expect(Bcrypt.verify("rasmuslerdorf", hash: BcryptHash.normalized(php)))
        #expect(!Bcrypt.verify("rasmuslerdorg", hash: BcryptHash.normalized(php)))
        #expect(!BcryptHash.isWellFormed("$2y$03$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a"), "cost below 4")
        #expect(!BcryptHash.isWellFormed(String(php.dropLast())))
    }

    /// A flood of wrong passwords cannot queue bcrypt work without bound: beyond `maxPending`
    /// verifications in progress the answer is `busy` at once; a verified password is answered from the
    /// cache without bcrypt, busy or not.
    @Test func passwordChecksInProgressAreBounded() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let hash = Bcrypt.hash("right", cost: 8)
        let gate = try await loop.submit { BasicAuthGate(users: ["alice": hash], logger: Logger(label: "test")) }.get()
        let right = "Basic " + Base64.encode(Array("alice:right".utf8))
        let wrong = "Basic " + Base64.encode(Array("alice:wrong".utf8))
        #expect(try await loop.flatSubmit { gate.check(right, on: loop) }.get() == .allowed)
        let flood = try await loop.submit { (0..<10).map { _ in gate.check(wrong, on: loop) } }.get()
        var verdicts: [BasicAuthGate.Verdict] = []
        for future in flood { verdicts.append(try await future.get()) }
        #expect(verdicts.filter { $0 == .busy }.count == 10 - BasicAuthGate.maxPending, "\(verdicts)")
        #expect(verdicts.filter { $0 == .denied }.count == BasicAuthGate.maxPending)
        #expect(try await loop.flatSubmit { gate.check(right, on: loop) }.get() == .allowed, "from the cache")
        try await loop.submit { gate.shutdown() }.get()
    }

    @Test func basicCredentialsAreDecodedStrictly() {
        #expect(BasicAuthGate.credentials("Basic " + Base64.encode(Array("alice:pa:ss wörd".utf8)))! == ("alice", "pa:ss wörd"))
        #expect(BasicAuthGate.credentials("basic YTpi")! == ("a", "b"))
        #expect(BasicAuthGate.credentials("Bearer YTpi") == nil)
        #expect(BasicAuthGate.credentials("Basic YTpi=") == nil, "not base64")
        #expect(BasicAuthGate.credentials("Basic " + Base64.encode(Array("no-colon".utf8))) == nil)
        #expect(BasicAuthGate.credentials(nil) == nil)
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            #expect(Base64.decode(Substring(Base64.encode(Array(text.utf8)))) == Array(text.utf8))
        }
        #expect(BasicAuthGate.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!BasicAuthGate.constantTimeEqual(Array("abc".utf8), Array("abd".utf8)))
        #expect(!BasicAuthGate.constantTimeEqual(Array("abc".utf8), Array("abcd".utf8)))
    }
}
