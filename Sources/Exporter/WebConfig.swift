import NIOSSL

/// The /metrics endpoint's TLS and basic auth, from a file in exporter-toolkit's web configuration
/// format (`--web.config.file`, as node_exporter takes it): `tls_server_config`, `http_server_config`
/// and `basic_auth_users`. What rapl-exporter cannot honour exactly is refused at start with the key's
/// name (exit 2) rather than ignored: a security setting silently dropped is worse than none.
public struct WebConfig: Sendable {
    /// TLS for the endpoint; nil: plain HTTP.
    public var tls: ServerTLSSettings?
    /// User name → bcrypt hash; empty: no basic auth.
    public var basicAuthUsers: [String: String] = [:]
    /// `http_server_config.headers`: added to every response.
    public var headers: [(String, String)] = []

    public init() {}

    /// Reads and checks the file (call it as the unprivileged process that serves: the certificate and key
    /// files are then read the same way at start as on every reload). Relative paths in it are relative
    /// to the file's directory, as exporter-toolkit resolves them.
    public static func load(path: String) throws(ConfigurationError) -> WebConfig {
        let text: String
        do { text = try SecretFileProblem.readText(path, what: "web configuration file") } catch {
            throw ConfigurationError("\(error) (\(SettingKey.webConfigFile.names))")
        }
        let directory = path.contains("/") ? String(path[...path.lastIndex(of: "/")!]) : ""
        return try parse(text, file: path, directory: directory)
    }

    static func parse(_ text: String, file: String, directory: String = "") throws(ConfigurationError) -> WebConfig {
        func fail(_ message: String) -> ConfigurationError { ConfigurationError("web configuration \(file): \(message)") }
        let root: YAMLNode
        do { root = try YAMLNode.parse(text) } catch { throw fail("\(error)") }
        var config = WebConfig()
        let top = try fields(root, at: "the file", known: ["tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"], fail)
        if top["rate_limit"] != nil { throw fail("rate_limit is not supported (the endpoint bounds its connections itself; see docs/metrics.md)") }
        if let tls = top["tls_server_config"] { config.tls = try ServerTLSSettings(tls, directory: directory, fail) }
        if let http = top["http_server_config"] {
            let keys = try fields(http, at: "http_server_config", known: ["http2", "headers"], fail)
            if let http2 = keys["http2"] {
                // Accepted for compatibility: the endpoint speaks HTTP/1.1 (with TLS too), which every
                // Prometheus scrapes; it offers no h2 in ALPN, so a client falls back to HTTP/1.1.
                guard case .scalar(let b) = http2, b == "true" || b == "false" else { throw fail("http_server_config.http2: expected true or false") }
            }
            if let headers = keys["headers"] {
                let allowed = [
                    "Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection", "Strict-Transport-Security",
                ]
                for (name, value) in try fields(headers, at: "http_server_config.headers", known: Set(allowed), fail).sorted(by: { $0.key < $1.key })
                {
                    let text = try scalar(value, at: "http_server_config.headers.\(name)", fail)
                    guard isValidLabelValue(text) else { throw fail("http_server_config.headers.\(name): control characters in the value") }
                    if !text.isEmpty { config.headers.append((name, text)) }
                }
            }
        }
        if let users = top["basic_auth_users"] {
            switch users {
            case .null: break
            case .mapping(let entries):
                for (user, value) in entries {
                    let hash = try scalar(value, at: "basic_auth_users.\(user)", fail)
                    guard BcryptHash.isWellFormed(hash) else {
                        throw fail(
                            "basic_auth_users.\(user): not a bcrypt hash ($2a$, $2b$ or $2y$, cost 4–31; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                        )
                    }
                    guard !user.contains(":"), isValidLabelValue(user), !user.isEmpty else {
                        throw fail("basic_auth_users: the user name '\(printable(user))' is empty or holds ':' or control characters")
                    }
                    config.basicAuthUsers[user] = hash
                }
            default: throw fail("basic_auth_users: expected user: bcrypt-hash lines")
            }
        }
        return config
    }

    /// A mapping's entries by key; unknown keys are an error (exporter-toolkit reads strictly too).
    static func fields(
        _ node: YAMLNode, at place: String, known: Set<String>, _ fail: (String) -> ConfigurationError
    ) throws(ConfigurationError) -> [String: YAMLNode] {
        switch node {
        case .null: return [:]
        case .mapping(let entries):
            var result: [String: YAMLNode] = [:]
            for (key, value) in entries {
                guard known.contains(key) else {
                    throw fail("unknown key '\(printable(key))' in \(place) (known: \(known.sorted().joined(separator: ", ")))")
                }
                result[key] = value
            }
            return result
        default: throw fail("\(place): expected a mapping of keys")
        }
    }

    static func scalar(_ node: YAMLNode, at place: String, _ fail: (String) -> ConfigurationError) throws(ConfigurationError) -> String {
        switch node {
        case .scalar(let text): return text
        case .null: return ""
        default: throw fail("\(place): expected a single value")
        }
    }
}

/// `tls_server_config`: the endpoint's certificate and key, and which clients it lets in.
public struct ServerTLSSettings: Sendable, Equatable {
    /// PEM, from a file (re-read when it changes) or inline in the configuration.
    public enum Material: Sendable, Equatable {
        case file(String)
        case inline(String)
    }

    /// The client-certificate policies that can be honoured exactly. `RequestClientCert` and
    /// `RequireAnyClientCert` (a certificate asked for but not verified) are refused: insecure, and
    /// exporter-toolkit's own documentation says so.
    public enum ClientAuth: String, Sendable, Equatable {
        case none = "NoClientCert"
        case verifyIfGiven = "VerifyClientCertIfGiven"
        case requireAndVerify = "RequireAndVerifyClientCert"
    }

    public var certificate: Material
    public var key: Material
    public var clientCA: Material?
    public var clientAuth: ClientAuth = .none
    public var minimumVersion: TLSVersion = .tlsv12
    public var maximumVersion: TLSVersion?
    /// IANA cipher suite values, in order; empty: the library's defaults.
    public var cipherSuites: [UInt16] = []

    /// The files this configuration reads (watched for changes).
    public var files: [String] {
        [certificate, key, clientCA].compactMap { if case .file(let path)? = $0 { path } else { nil } }
    }

    init(_ node: YAMLNode, directory: String, _ fail: (String) -> ConfigurationError) throws(ConfigurationError) {
        let known: Set<String> = [
            "cert_file", "key_file", "cert", "key", "client_ca_file", "client_ca", "client_auth_type", "min_version", "max_version",
            "cipher_suites", "prefer_server_cipher_suites", "curve_preferences", "client_allowed_sans",
        ]
        let keys = try WebConfig.fields(node, at: "tls_server_config", known: known, fail)
        func text(_ key: String) throws(ConfigurationError) -> String? {
            guard let node = keys[key] else { return nil }
            let value = try WebConfig.scalar(node, at: "tls_server_config.\(key)", fail)
            return value.isEmpty ? nil : value
        }
        func material(file: String, inline: String) throws(ConfigurationError) -> Material? {
            switch (try text(file), try text(inline)) {
            case (nil, nil): return nil
            case (let path?, nil): return .file(path.hasPrefix("/") ? path : directory + path)
            case (nil, let pem?): return .inline(pem)
            case (_?, _?): throw fail("tls_server_config: give \(file) or \(inline), not both")
            }
        }
        guard let certificate = try material(file: "cert_file", inline: "cert"), let key = try material(file: "key_file", inline: "key") else {
            throw fail("tls_server_config needs a certificate and its key (cert_file and key_file, or cert and key inline)")
        }
        self.certificate = certificate
        self.key = key
        clientCA = try material(file: "client_ca_file", inline: "client_ca")
        if let policy = try text("client_auth_type") {
            guard let parsed = ClientAuth(rawValue: policy) else {
                if policy == "RequestClientCert" || policy == "RequireAnyClientCert" {
                    throw fail(
                        "tls_server_config.client_auth_type \(policy) asks for a certificate without verifying it and is not supported; use RequireAndVerifyClientCert with client_ca_file"
                    )
                }
                throw fail(
                    "tls_server_config.client_auth_type '\(printable(policy))': expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                )
            }
            clientAuth = parsed
        }
        if clientAuth != .none, clientCA == nil {
            throw fail("tls_server_config.client_auth_type \(clientAuth.rawValue) needs client_ca_file (the CA that signs the clients' certificates)")
        }
        if clientAuth == .none, clientCA != nil {
            throw fail(
                "tls_server_config.client_ca_file is set but client_auth_type is NoClientCert: set client_auth_type: RequireAndVerifyClientCert")
        }
        func version(_ key: String) throws(ConfigurationError) -> TLSVersion? {
            guard let name = try text(key) else { return nil }
            switch name {
            case "TLS10": return .tlsv1
            case "TLS11": return .tlsv11
            case "TLS12": return .tlsv12
            case "TLS13": return .tlsv13
            default: throw fail("tls_server_config.\(key) '\(printable(name))': expected TLS10, TLS11, TLS12 or TLS13")
            }
        }
        minimumVersion = try version("min_version") ?? .tlsv12
        maximumVersion = try version("max_version")
        let order: [TLSVersion] = [.tlsv1, .tlsv11, .tlsv12, .tlsv13]
        if let maximum = maximumVersion, order.firstIndex(of: maximum)! < order.firstIndex(of: minimumVersion)! {
            throw fail("tls_server_config.max_version is below min_version")
        }
        if let suites = keys["cipher_suites"] {
            guard case .sequence(let items) = suites else { throw fail("tls_server_config.cipher_suites: expected a list") }
            for item in items {
                guard case .scalar(let name) = item, let value = Self.cipherSuiteValues[name] else {
                    throw fail(
                        "tls_server_config.cipher_suites: unknown or unsupported suite \(item) (supported: \(Self.cipherSuiteValues.keys.sorted().joined(separator: ", ")))"
                    )
                }
                cipherSuites.append(value)
            }
        }
        if let prefer = keys["prefer_server_cipher_suites"] {
            // The server's order is what BoringSSL uses for TLS 1.2 here either way (and Go ignores the key).
            guard case .scalar(let b) = prefer, b == "true" || b == "false" else {
                throw fail("tls_server_config.prefer_server_cipher_suites: expected true or false")
            }
        }
        for unsupported in ["curve_preferences", "client_allowed_sans"] where keys[unsupported] != nil {
            throw fail("tls_server_config.\(unsupported) is not supported by rapl-exporter (refused rather than ignored; see docs/metrics.md)")
        }
    }

    /// Go's names of the TLS 1.2 suites (the IANA names) that BoringSSL offers.
    static let cipherSuiteValues: [String: UInt16] = [
        "TLS_RSA_WITH_AES_128_CBC_SHA": 0x002F, "TLS_RSA_WITH_AES_256_CBC_SHA": 0x0035,
        "TLS_RSA_WITH_AES_128_GCM_SHA256": 0x009C, "TLS_RSA_WITH_AES_256_GCM_SHA384": 0x009D,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": 0xC009, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": 0xC00A,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": 0xC013, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": 0xC014,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": 0xC02C,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xC02F, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": 0xC030,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA8, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA9,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": 0xCCA8, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": 0xCCA9,
    ]

    /// The TLS context, reading the files now.
    public func makeContext() throws -> NIOSSLContext {
        func certificates(_ material: Material) throws -> [NIOSSLCertificate] {
            switch material {
            case .file(let path): try NIOSSLCertificate.fromPEMFile(path)
            case .inline(let pem): try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
            }
        }
        let privateKey: NIOSSLPrivateKey =
            switch key {
            case .file(let path): try NIOSSLPrivateKey(file: path, format: .pem)
            case .inline(let pem): try NIOSSLPrivateKey(bytes: Array(pem.utf8), format: .pem)
            }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try certificates(certificate).map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = minimumVersion
        configuration.maximumTLSVersion = maximumVersion
        if !cipherSuites.isEmpty { configuration.cipherSuiteValues = cipherSuites.map { NIOTLSCipher(rawValue: $0) } }
        if let clientCA {
            configuration.trustRoots = .certificates(try certificates(clientCA))
            configuration.sendCANameList = true
        }
        switch clientAuth {
        case .none: configuration.certificateVerification = .none
        case .verifyIfGiven: configuration.certificateVerification = .optionalVerification
        case .requireAndVerify: configuration.certificateVerification = .noHostnameVerification
        }
        return try NIOSSLContext(configuration: configuration)
    }
}

/// Checks of the hashes in `basic_auth_users`.
enum BcryptHash {
    /// `$2a$`, `$2b$` or `$2y$`, a two-digit cost 4–31, then 53 characters of bcrypt's base64.
    static func isWellFormed(_ hash: String) -> Bool {
        let bytes = Array(hash.utf8)
        guard bytes.count == 60, bytes[0] == UInt8(ascii: "$"), bytes[1] == UInt8(ascii: "2"),
            [UInt8(ascii: "a"), UInt8(ascii: "b"), UInt8(ascii: "y")].contains(bytes[2]), bytes[3] == UInt8(ascii: "$"),
            bytes[6] == UInt8(ascii: "$"), let cost = Int(String(decoding: bytes[4..<6], as: UTF8.self)), (4...31).contains(cost)
        else { return false }
        return bytes[7...].allSatisfy {
            $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "/") || ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 122)
        }
    }

    /// `$2y$` (htpasswd's marker) is the same algorithm as `$2b$`, which the bcrypt in use knows.
    static func normalized(_ hash: String) -> String {
        hash.hasPrefix("$2y$") ? "$2b$" + hash.dropFirst(4) : hash
    }
}
