import Logging
import RAPLBackend
import Support

/// A configuration error: one clear line on stderr and exit status 2, before anything starts.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// What the command line gave, by key: the last value of each option, every value of a repeatable one,
/// and the boolean flags that are set. A key absent here falls back to its variable, then its default.
public struct CommandLineValues: Sendable {
    public var values: [SettingKey: String] = [:]
    public var lists: [SettingKey: [String]] = [:]
    public var flags: Set<SettingKey> = []

    public init() {}

    public subscript(_ key: SettingKey) -> String? {
        get { values[key] }
        set { values[key] = newValue }
    }
}

/// TLS, credentials and extra headers for the remote-write connection.
public struct RemoteWriteConnection: Sendable {
    public var tls: TLSSettings
    public var authorization: RemoteWriteAuthorization
    public var headers: [(String, String)]
}

/// Where and how the counters are read: what `run` and `probe` share.
public struct ReadingSettings: Sendable {
    public var backend: BackendPreference
    public var nameStyle: NameStyle
    public var logLevel: Logger.Level
    public var paths: HardwarePaths
}

/// The run command's settings, typed and checked: resolved from the command line and the environment
/// (injected, so precedence and every invalid value are tested in-process) through ``SettingKey/all``.
/// A flag beats its variable, a variable beats the default; an empty variable counts as unset.
public struct Settings: Sendable {
    public enum Output: String, Sendable {
        case remoteWrite = "remote-write"
        /// OTLP/HTTP (protobuf) to an OpenTelemetry endpoint.
        case otlp
        case stdout
        /// Neither: only the /metrics endpoint (`--listen`).
        case none
    }

    public var reading: ReadingSettings
    public var scrapeInterval: Duration
    public var output: Output
    /// Set whenever a URL is given, whatever the output: every option given is checked.
    public var endpoint: RemoteWriteEndpoint?
    public var connection: RemoteWriteConnection?
    /// The remote writer's settings, with output remote-write.
    public var remoteWrite: RemoteWriteSettings?
    public var duration: Duration?
    public var stuckAfter: Duration
    public var maximumPower: Double
    /// How often the power limits, TDP and throttle counters are re-read; nil: not read (`0`).
    public var powerLimitsInterval: Duration?
    public var keepCapabilities: Bool
    /// The heartbeat file as given; nil for the default (`HealthFile.defaultPath`).
    public var healthFile: String?
    /// Where the /metrics endpoint listens; nil: no endpoint.
    public var listen: ListenAddress?
    /// The endpoint's web configuration file (TLS, basic auth); read at start as the unprivileged process.
    public var webConfigFile: String?
    /// The disk spool (`--spool-dir`); opened at start as the unprivileged process.
    public var spool: SpoolSettings?

    public static func resolve(_ cli: CommandLineValues, environment: [String: String]) throws(ConfigurationError) -> Settings {
        try Resolver(cli: cli, environment: environment).run()
    }

    public static func resolveReading(_ cli: CommandLineValues, environment: [String: String]) throws(ConfigurationError) -> ReadingSettings {
        try Resolver(cli: cli, environment: environment).reading()
    }
}

/// Reads each key once: flag, else variable, else default; and checks it.
struct Resolver {
    let cli: CommandLineValues
    let environment: [String: String]

    /// The flag's value, else the variable's (empty counts as unset).
    func text(_ key: SettingKey) -> String? {
        if let value = cli.values[key] { return value }
        guard let variable = key.variable, let value = environment[variable], !value.isEmpty else { return nil }
        return value
    }

    /// A positive, finite number (seconds, watts) no larger than `limit`.
    func number(_ key: SettingKey, default fallback: Double?, max limit: Double = 86400 * 365) throws(ConfigurationError) -> Double? {
        guard let text = text(key) else { return fallback }
        guard let value = Double(text), value.isFinite, value > 0, value <= limit else {
            throw ConfigurationError("invalid \(key.flag) '\(printable(text))' (\(key.names)): expected a number of \(key.valueName) > 0")
        }
        return value
    }

    func count(_ key: SettingKey, default fallback: Int) throws(ConfigurationError) -> Int {
        guard let text = text(key) else { return fallback }
        guard let value = Int(text), value >= 1 else {
            throw ConfigurationError("invalid \(key.flag) '\(printable(text))' (\(key.names)): expected a whole number ≥ 1")
        }
        return value
    }

    /// The flag, or its variable: 1/true/yes/on or 0/false/no/off (any case); anything else is an error.
    func boolean(_ key: SettingKey) throws(ConfigurationError) -> Bool {
        if cli.flags.contains(key) { return true }
        guard let variable = key.variable, let text = environment[variable], !text.isEmpty else { return false }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default:
            throw ConfigurationError("invalid \(variable) '\(printable(text))' (or --\(key.flag)): expected true or false (1/0, yes/no, on/off)")
        }
    }

    /// The repeated flag's values, else the variable's, split at the key's separator.
    func list(_ key: SettingKey) -> [String] {
        if let values = cli.lists[key], !values.isEmpty { return values }
        guard case .list(let separator) = key.kind, let text = text(key) else { return [] }
        return text.split(whereSeparator: { $0 == separator || $0 == "\n" }).map(String.init).filter { !trimmed(Substring($0)).isEmpty }
    }

    func reading() throws(ConfigurationError) -> ReadingSettings {
        let backendText = text(.backend) ?? "auto"
        guard let backend = BackendPreference(rawValue: backendText.lowercased()) else {
            throw ConfigurationError(
                "invalid backend '\(printable(backendText))' (\(SettingKey.backend.names)): expected auto, perf, msr, sysfs or simulated")
        }
        let styleText = text(.componentNames) ?? "seed"
        guard let style = NameStyle(rawValue: styleText.lowercased()) else {
            throw ConfigurationError(
                "invalid component names '\(printable(styleText))' (\(SettingKey.componentNames.names)): expected seed or pyjoules")
        }
        let levelText = text(.logLevel) ?? "info"
        // The seed's Python logging names WARN/FATAL and upper case; accept those too.
        let normalized =
            switch levelText.lowercased() {
            case "warn": "warning"
            case "fatal": "critical"
            default: levelText.lowercased()
            }
        guard let level = Logger.Level(rawValue: normalized) else {
            throw ConfigurationError(
                "invalid log level '\(printable(levelText))' (\(SettingKey.logLevel.names)): expected trace, debug, info, notice, warning, error or critical"
            )
        }
        let paths = HardwarePaths(sysfsRoot: text(.sysfsRoot) ?? "/sys", devRoot: text(.devRoot) ?? "/dev", procRoot: text(.procRoot) ?? "/proc")
        return ReadingSettings(backend: backend, nameStyle: style, logLevel: level, paths: paths)
    }

    func run() throws(ConfigurationError) -> Settings {
        let reading = try reading()
        let scrape = try number(.scrapeInterval, default: 0.1)!
        guard scrape >= 0.0001 else {
            throw ConfigurationError(
                "invalid scrape-interval \(scrape): the shortest supported window is 0.0001 s (RAPL itself updates about every 1 ms)")
        }
        let push = try number(.pushInterval, default: 4)!
        guard push >= scrape else {
            throw ConfigurationError(
                "invalid push-interval \(push) s: it is shorter than the scrape interval \(scrape) s (PUSH_INTERVAL_S must be ≥ SCRAPE_INTERVAL_S)")
        }
        let batches = try count(.maxRetryBatches, default: 5)
        let perRequest = try count(.maxSamplesPerRequest, default: 2000)
        let age = try number(.maxSampleAge, default: 1800)!
        let timeout = try number(.requestTimeout, default: 10)!
        let shutdown = try number(.shutdownTimeout, default: 8)!
        let stuck = try number(.stuckAfter, default: 5)!
        let runFor = try number(.duration, default: nil)
        let power = try number(.maxDomainPower, default: EnergyMeter.defaultMaximumPower)!
        let limitsEvery = text(.powerLimitsInterval) == "0" ? nil : try number(.powerLimitsInterval, default: 5, max: 86400)
        let remoteURL = text(.remoteWriteURL)
        let otlpURL = text(.otlpMetricsEndpoint) ?? text(.otlpEndpoint).map { $0.hasSuffix("/") ? $0 + "v1/metrics" : $0 + "/v1/metrics" }
        let listen = try listenAddress()
        let webConfig = text(.webConfigFile)
        if webConfig != nil, listen == nil {
            throw ConfigurationError(
                "a web configuration file (\(SettingKey.webConfigFile.names)) configures the /metrics endpoint, which is off: set LISTEN_ADDRESS (or --listen)"
            )
        }
        if text(.output) == nil, remoteURL != nil, otlpURL != nil {
            throw ConfigurationError(
                "both REMOTE_WRITE_URL and an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or …_METRICS_ENDPOINT) are set: one push output at a time, choose with OUTPUT=remote-write or OUTPUT=otlp"
            )
        }
        let outputText = text(.output) ?? (remoteURL != nil ? "remote-write" : otlpURL != nil ? "otlp" : listen != nil ? "none" : "stdout")
        guard let output = Settings.Output(rawValue: outputText.lowercased()) else {
            throw ConfigurationError(
                "invalid output '\(printable(outputText))' (\(SettingKey.output.names)): expected remote-write, otlp, stdout or none")
        }
        if output == .otlp, otlpURL == nil {
            throw ConfigurationError("output otlp needs OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (or --otlp-endpoint)")
        }
        // The URL the connection options apply to: OTLP's with output otlp, else remote write's.
        let url = output == .otlp ? otlpURL : remoteURL
        if output == .none, listen == nil {
            throw ConfigurationError("output none needs the /metrics endpoint: set LISTEN_ADDRESS (or --listen), or choose remote-write or stdout")
        }
        let labels = try seriesLabels(style: reading.nameStyle)
        let keep = try boolean(.keepCapabilities)
        var endpoint: RemoteWriteEndpoint?
        var connection: RemoteWriteConnection?
        if let url {
            guard let parsed = RemoteWriteEndpoint(url) else {
                if output == .otlp {
                    throw ConfigurationError(
                        "invalid OTLP endpoint '\(RemoteWriteEndpoint.redacted(url))' (\(SettingKey.otlpEndpoint.names), or \(SettingKey.otlpMetricsEndpoint.names)): expected http://host[:port][/path] or https://…"
                    )
                }
                throw ConfigurationError(
                    "invalid remote-write URL '\(RemoteWriteEndpoint.redacted(url))' (\(SettingKey.remoteWriteURL.names)): expected http://host[:port]/path or https://…, printable ASCII without spaces (percent-encode the rest), without user info (use --basic-auth-username)"
                )
            }
            endpoint = parsed
            // Checked whatever the output: an option given wrongly is an error, not a surprise later.
            connection = try self.connection(parsed)
        }
        let protocolText = text(.remoteWriteProtocol) ?? "1.0"
        guard let wireProtocol = RemoteWriteProtocol(rawValue: protocolText.lowercased()) else {
            throw ConfigurationError(
                "invalid remote-write protocol '\(printable(protocolText))' (\(SettingKey.remoteWriteProtocol.names)): expected 1.0, 2.0 or auto")
        }
        var remoteWrite: RemoteWriteSettings?
        var otlp: OTLPSettings?
        var requestTimeout = timeout
        // The OTLP options are checked whatever the output, like the connection's: one given wrongly is an
        // error now, not a surprise when the output is switched.
        let otlpChecked = try otlpSettings()
        let otlpHeaders = try self.otlpHeaders()
        let otlpTimeout = try number(.otlpTimeout, default: nil, max: 86_400_000)
        if output != .otlp, let otlpURL, RemoteWriteEndpoint(otlpURL) == nil {
            throw ConfigurationError(
                "invalid OTLP endpoint '\(RemoteWriteEndpoint.redacted(otlpURL))' (\(SettingKey.otlpEndpoint.names), or \(SettingKey.otlpMetricsEndpoint.names)): expected http://host[:port][/path] or https://…"
            )
        }
        if output == .otlp {
            otlp = otlpChecked
            if text(.requestTimeout) == nil, let ms = otlpTimeout { requestTimeout = ms / 1000 }
            if let otlpHeaders { connection?.headers += otlpHeaders }
        }
        if output == .remoteWrite || output == .otlp {
            guard let endpoint else {
                throw ConfigurationError("output remote-write needs REMOTE_WRITE_URL (or --remote-write-url)")
            }
            remoteWrite = RemoteWriteSettings(
                endpoint: endpoint,
                pushInterval: Duration(secondsValue: push),
                maxQueuedBatches: batches,
                maxSamplesPerRequest: perRequest,
                maxSampleAge: Duration(secondsValue: age),
                requestTimeout: Duration(secondsValue: requestTimeout),
                shutdownTimeout: Duration(secondsValue: shutdown),
                series: labels
            )
            remoteWrite?.wireProtocol = wireProtocol
            if let otlp {
                remoteWrite?.otlp = otlp
                // OTLP carries the energy as the cumulative sum, and only so.
                remoteWrite?.series.cumulative = true
                remoteWrite?.series.windowEnergy = false
            }
        }
        return Settings(
            reading: reading,
            scrapeInterval: Duration(secondsValue: scrape),
            output: output,
            endpoint: endpoint,
            connection: connection,
            remoteWrite: remoteWrite,
            duration: runFor.map { Duration(secondsValue: $0) },
            stuckAfter: Duration(secondsValue: stuck),
            maximumPower: power,
            powerLimitsInterval: limitsEvery.map { Duration(secondsValue: $0) },
            keepCapabilities: keep,
            healthFile: text(.healthFile),
            listen: listen,
            webConfigFile: webConfig,
            spool: try spool(output: output)
        )
    }

    /// `--spool-dir` and `--spool-max-bytes`: a spool keeps what a push output has not delivered.
    func spool(output: Settings.Output) throws(ConfigurationError) -> SpoolSettings? {
        let maxText = text(.spoolMaxBytes)
        var maxBytes = SpoolSettings.defaultMaxBytes
        if let maxText {
            guard let bytes = Self.byteSize(maxText), bytes >= 64 << 10 else {
                throw ConfigurationError(
                    "invalid spool-max-bytes '\(printable(maxText))' (\(SettingKey.spoolMaxBytes.names)): expected a size of at least 64Ki, in bytes or with Ki, Mi or Gi"
                )
            }
            maxBytes = bytes
        }
        guard let directory = text(.spoolDirectory) else { return nil }
        guard output == .remoteWrite || output == .otlp else {
            throw ConfigurationError(
                "a spool (\(SettingKey.spoolDirectory.names)) keeps what a push output has not delivered, and output is \(output.rawValue): set REMOTE_WRITE_URL or an OTLP endpoint, or unset SPOOL_DIR"
            )
        }
        return SpoolSettings(directory: directory, maxBytes: maxBytes)
    }

    /// `1048576`, `512Ki`, `256Mi`, `2Gi` (also K, M, G as the same binary multiples).
    static func byteSize(_ text: String) -> Int? {
        var digits = Substring(text)
        var multiplier = 1
        for (suffix, m) in [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)]
        where digits.hasSuffix(suffix) {
            digits = digits.dropLast(suffix.count)
            multiplier = m
            break
        }
        guard let n = Int(digits), n > 0 else { return nil }
        let (product, overflow) = n.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }

    /// OTLP's compression and resource, from the standard OpenTelemetry variables.
    func otlpSettings() throws(ConfigurationError) -> OTLPSettings {
        let compression = (text(.otlpCompression) ?? "none").lowercased()
        guard compression == "gzip" || compression == "none" else {
            throw ConfigurationError(
                "invalid OTLP compression '\(printable(compression))' (\(SettingKey.otlpCompression.names)): expected gzip or none")
        }
        var attributes: [(String, String)] = []
        if let text = text(.otelResourceAttributes) {
            for pair in text.split(separator: ",") where !trimmed(pair).isEmpty {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let key = percentDecoded(trimmed(parts[0])), !key.isEmpty, let value = percentDecoded(trimmed(parts[1])),
                    isValidLabelValue(key), isValidLabelValue(value)
                else {
                    throw ConfigurationError(
                        "invalid resource attribute '\(printable(String(pair)))' (\(SettingKey.otelResourceAttributes.names)): expected key=value, percent-encoded"
                    )
                }
                attributes.removeAll { $0.0 == key }
                attributes.append((key, value))
            }
        }
        // OTEL_SERVICE_NAME beats a service.name among the attributes, which beats the default.
        let service = text(.otelServiceName) ?? attributes.first { $0.0 == "service.name" }?.1 ?? "rapl-exporter"
        attributes.removeAll { $0.0 == "service.name" }
        var resource = [("service.name", service)]
        if !attributes.contains(where: { $0.0 == "host.name" }) { resource.append(("host.name", HostName.current)) }
        return OTLPSettings(gzip: compression == "gzip", resource: resource + attributes)
    }

    /// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs, values percent-decoded.
    func otlpHeaders() throws(ConfigurationError) -> [(String, String)]? {
        let pairs = list(.otlpHeaders)
        guard !pairs.isEmpty else { return nil }
        var headers: [(String, String)] = []
        for pair in pairs {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let name = percentDecoded(trimmed(parts[0])), let value = percentDecoded(trimmed(parts[1])),
                isValidHeaderName(name), !value.isEmpty, isValidLabelValue(value)
            else {
                throw ConfigurationError(
                    "invalid OTLP header '\(printable(pair))' (\(SettingKey.otlpHeaders.names)): expected key=value, the key letters, digits, '-' and '_'"
                )
            }
            guard !reservedHeaderNames.contains(name.lowercased()) else {
                throw ConfigurationError("header '\(name)' is set by rapl-exporter itself (use the auth options for Authorization)")
            }
            headers.append((name, value))
        }
        return headers
    }

    /// `--listen`: HOST:PORT, a port the unprivileged process can bind.
    func listenAddress() throws(ConfigurationError) -> ListenAddress? {
        guard let given = text(.listen) else { return nil }
        guard let address = ListenAddress(given) else {
            throw ConfigurationError(
                "invalid listen address '\(printable(given))' (\(SettingKey.listen.names)): expected HOST:PORT, [IPv6]:PORT or :PORT (every interface)"
            )
        }
        guard address.port >= 1024 else {
            throw ConfigurationError(
                "listen port \(address.port) (\(SettingKey.listen.names)) is below 1024: binding it needs CAP_NET_BIND_SERVICE, which the exporter has dropped before it listens; use a port from 1024 up"
            )
        }
        return address
    }

    func seriesLabels(style: NameStyle) throws(ConfigurationError) -> SeriesSettings {
        let source = text(.serviceLabel) ?? "cpu-pyjoules"
        let metric = text(.metricName) ?? "pyjoules_remote_write_energy_uj"
        guard isValidMetricName(metric) else {
            throw ConfigurationError("invalid metric name '\(printable(metric))' (\(SettingKey.metricName.names)): expected [a-zA-Z_:][a-zA-Z0-9_:]*")
        }
        guard !source.isEmpty, isValidLabelValue(source) else {
            throw ConfigurationError(
                "invalid service label '\(printable(source))' (\(SettingKey.serviceLabel.names)): expected non-empty UTF-8 text without control characters"
            )
        }
        var extra: [(String, String)] = []
        for pair in list(.labels) {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, isValidLabelName(parts[0]), !parts[1].isEmpty else {
                throw ConfigurationError(
                    "invalid label '\(printable(pair))' (\(SettingKey.labels.names)): expected name=value with name [a-zA-Z_][a-zA-Z0-9_]*")
            }
            guard isValidLabelValue(parts[1]) else {
                throw ConfigurationError(
                    "invalid label '\(printable(pair))' (\(SettingKey.labels.names)): the value must be UTF-8 text without control characters")
            }
            guard !SeriesSettings.reservedLabelNames.contains(parts[0]) else {
                throw ConfigurationError("label '\(parts[0])' is set by rapl-exporter itself")
            }
            guard !extra.contains(where: { $0.0 == parts[0] }) else {
                throw ConfigurationError("label '\(parts[0])' is given twice (\(SettingKey.labels.names)): a series has one value per label")
            }
            extra.append((parts[0], parts[1]))
        }
        var labels = SeriesSettings(metricName: metric, source: source, nameStyle: style, cumulative: try boolean(.cumulative))
        labels.extra = extra
        return labels
    }

    /// TLS, credentials and extra headers, checked now (the secret files' contents are checked by the
    /// caller after the capabilities are dropped, as the process that reads them at every push).
    func connection(_ endpoint: RemoteWriteEndpoint) throws(ConfigurationError) -> RemoteWriteConnection {
        let tls = TLSSettings(
            caFile: text(.tlsCAFile),
            certificateFile: text(.tlsCertFile),
            keyFile: text(.tlsKeyFile),
            serverName: text(.tlsServerName),
            insecureSkipVerify: try boolean(.tlsInsecureSkipVerify)
        )
        if (tls.certificateFile == nil) != (tls.keyFile == nil) {
            throw ConfigurationError(
                "mutual TLS needs both --tls-cert-file and --tls-key-file (REMOTE_WRITE_TLS_CERT_FILE, REMOTE_WRITE_TLS_KEY_FILE)")
        }
        if !endpoint.tls, tls != TLSSettings() {
            throw ConfigurationError("TLS options are set but the remote-write URL \(endpoint) is http://; use https://")
        }
        let username = text(.basicAuthUsername)
        let authorization: RemoteWriteAuthorization
        switch (username, text(.basicAuthPasswordFile), text(.bearerTokenFile)) {
        case (nil, nil, nil): authorization = .none
        case (let user?, let file?, nil): authorization = .basic(username: user, passwordFile: file)
        case (nil, nil, let file?): authorization = .bearer(tokenFile: file)
        case (_, _, _?): throw ConfigurationError("choose basic auth or a bearer token, not both")
        default:
            throw ConfigurationError(
                "basic auth needs both --basic-auth-username and --basic-auth-password-file (REMOTE_WRITE_USERNAME, REMOTE_WRITE_PASSWORD_FILE)")
        }
        if let username, username.contains(":") || !isValidLabelValue(username) {
            throw ConfigurationError("invalid basic-auth user name (\(SettingKey.basicAuthUsername.names)): no ':' and no control characters")
        }
        var headers: [(String, String)] = []
        for pair in list(.headers) {
            let invalid = ConfigurationError(
                "invalid header '\(printable(pair))' (\(SettingKey.headers.names)): expected 'Name: value', the name letters, digits, '-' and '_', the value non-empty UTF-8 without control characters"
            )
            guard let colon = pair.firstIndex(of: ":") else { throw invalid }
            let name = trimmed(pair[..<colon])
            let value = trimmed(pair[pair.index(after: colon)...])
            guard isValidHeaderName(name), !value.isEmpty, isValidLabelValue(value) else { throw invalid }
            guard !reservedHeaderNames.contains(name.lowercased()) else {
                throw ConfigurationError("header '\(name)' is set by rapl-exporter itself (use the auth options for Authorization)")
            }
            headers.append((name, value))
        }
        return RemoteWriteConnection(tls: tls, authorization: authorization, headers: headers)
    }
}

/// A header name rapl-exporter accepts: ASCII letters, digits, `-` and `_`.
func isValidHeaderName(_ name: String) -> Bool {
    !name.isEmpty
        && name.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_".unicodeScalars.contains($0))
        }
}

/// `text` with `%XX` escapes decoded (W3C baggage, as the OpenTelemetry variables are written); nil when
/// an escape is malformed or the result is not UTF-8.
func percentDecoded(_ text: String) -> String? {
    var bytes: [UInt8] = []
    var rest = Substring(text).utf8[...]
    while let byte = rest.first {
        rest = rest.dropFirst()
        if byte == UInt8(ascii: "%") {
            guard rest.count >= 2, let value = UInt8(String(decoding: rest.prefix(2), as: UTF8.self), radix: 16) else { return nil }
            bytes.append(value)
            rest = rest.dropFirst(2)
        } else {
            bytes.append(byte)
        }
    }
    return String(validating: bytes, as: UTF8.self)
}

/// `text` with control characters escaped, so that a message about it stays one line.
func printable(_ text: String) -> String {
    text.unicodeScalars.map { isControl($0) || $0 == "\t" ? "\\x\(String($0.value, radix: 16))" : String($0) }.joined()
}

/// UTF-8 (nothing replaced while decoding) without control characters: what a label value may hold.
func isValidLabelValue(_ text: String) -> Bool {
    !text.unicodeScalars.contains { isControl($0) || $0 == "\t" || $0 == "\u{FFFD}" }
}

func isValidLabelName(_ name: String) -> Bool {
    isValidMetricName(name) && !name.contains(":") && !name.hasPrefix("__")
}

func isValidMetricName(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first else { return false }
    func ok(_ c: Unicode.Scalar, first: Bool) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || c == ":" || (!first && c >= "0" && c <= "9")
    }
    return ok(first, first: true) && name.unicodeScalars.dropFirst().allSatisfy { ok($0, first: false) }
}

/// `text` without leading and trailing spaces and tabs (and a final CR).
func trimmed(_ text: Substring) -> String {
    var t = text
    while let f = t.first, f == " " || f == "\t" { t.removeFirst() }
    while let l = t.last, l == " " || l == "\t" || l == "\r" { t.removeLast() }
    return String(t)
}
