/// One setting: its command-line flag, its environment variable, its default and its help line. The
/// one table of every setting is ``SettingKey/all``: the command line's help is generated from it,
/// ``Settings/resolve(_:environment:)`` reads through it, and a test checks docs/configuration.md
/// against it (every key documented, nothing documented that does not exist).
public struct SettingKey: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// `--flag VALUE`.
        case value
        /// `--flag` alone; its variable is a boolean (`1/true/yes/on`, `0/false/no/off`).
        case boolean
        /// `--flag VALUE`, repeatable; its variable holds several values split at `separator`.
        case list(separator: Character)
    }

    /// Which commands take it.
    public enum Command: String, Sendable, Hashable {
        case run, probe, healthcheck, compare, top
    }

    /// The long flag without its dashes (`scrape-interval`).
    public let flag: String
    /// The environment variable, when there is one (`SCRAPE_INTERVAL_S`).
    public let variable: String?
    public let kind: Kind
    /// The default as written in help and docs; nil when none (the setting is off or derived).
    public let defaultText: String?
    /// What the value is (`seconds`), for the help's `--flag <seconds>`.
    public let valueName: String
    /// One sentence, without the variable and default (those are appended by ``helpLine``).
    public let summary: String
    public let commands: Set<Command>

    init(
        _ flag: String, _ variable: String?, _ kind: Kind = .value, default defaultText: String? = nil, value valueName: String = "value",
        commands: Set<Command> = [.run], _ summary: String
    ) {
        self.flag = flag
        self.variable = variable
        self.kind = kind
        self.defaultText = defaultText
        self.valueName = valueName
        self.summary = summary
        self.commands = commands
    }

    public var description: String { "--" + flag }

    /// `--flag` or `VARIABLE`, for error messages.
    public var names: String { variable.map { "--\(flag) or \($0)" } ?? "--\(flag)" }

    /// The help line: the summary, then the variable and the default in parentheses.
    public var helpLine: String {
        var parts: [String] = []
        if let variable { parts.append(variable) }
        if let defaultText { parts.append("default \(defaultText)") }
        return parts.isEmpty ? summary : "\(summary) (\(parts.joined(separator: "; ")))."
    }

    /// One key per flag and command set: `compare --duration` is not `run --duration`.
    public static func == (a: SettingKey, b: SettingKey) -> Bool { a.flag == b.flag && a.commands == b.commands }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(flag)
        hasher.combine(commands)
    }
}

extension SettingKey {
    // MARK: Sampling and output
    public static let remoteWriteURL = SettingKey(
        "remote-write-url", "REMOTE_WRITE_URL", value: "url", "Remote-write endpoint, http(s)://host[:port]/path; with none, windows go to stdout")
    public static let remoteWriteProtocol = SettingKey(
        "remote-write-protocol", "REMOTE_WRITE_PROTOCOL", default: "1.0", value: "version",
        "Remote-write protocol: 1.0, 2.0 (with metadata; Prometheus 3 and later), or auto (2.0, falling back to 1.0 with the same samples)")
    public static let scrapeInterval = SettingKey(
        "scrape-interval", "SCRAPE_INTERVAL_S", default: "0.1", value: "seconds", "Seconds per measurement window (at least 0.0001)")
    public static let pushInterval = SettingKey(
        "push-interval", "PUSH_INTERVAL_S", default: "4", value: "seconds", "Seconds between remote-write batches; at least the scrape interval")
    public static let maxRetryBatches = SettingKey(
        "max-retry-batches", "MAX_RETRY_BATCHES", default: "5", value: "n",
        "Batches that may wait for delivery; beyond it the oldest is tried once more, then dropped")
    public static let serviceLabel = SettingKey("service-label", "SERVICE_LABEL", default: "cpu-pyjoules", value: "name", "Value of the source label")
    public static let metricName = SettingKey(
        "metric-name", "METRIC_DEFAULT", default: "pyjoules_remote_write_energy_uj", value: "name", "Name of the per-window energy metric")
    public static let cumulative = SettingKey(
        "cumulative", "EXPORT_CUMULATIVE", .boolean, "Also write the cumulative counter rapl_energy_joules_total, for rate()")
    public static let output = SettingKey(
        "output", "OUTPUT", default: "remote-write with a URL, else otlp with an OTLP endpoint, else none with --listen, else stdout", value: "kind",
        "remote-write, otlp, stdout or none (only the /metrics endpoint)")
    public static let listen = SettingKey(
        "listen", "LISTEN_ADDRESS", value: "host:port",
        "Serve /metrics (Prometheus text and OpenMetrics), /healthz and / on this address, e.g. ':9102'; off when unset")
    public static let webConfigFile = SettingKey(
        "web.config.file", "WEB_CONFIG_FILE", value: "path",
        "TLS, basic auth and response headers for the /metrics endpoint, in exporter-toolkit's web configuration format (node_exporter's)")
    // MARK: Spool
    public static let spoolDirectory = SettingKey(
        "spool-dir", "SPOOL_DIR", value: "path",
        "Keep every closed window in a write-ahead log here until it is delivered: nothing lost in long outages or restarts, and the energy used while stopped accounted; off when unset"
    )
    public static let spoolMaxBytes = SettingKey(
        "spool-max-bytes", "SPOOL_MAX_BYTES", default: "256Mi", value: "bytes",
        "Most disk the spool may use (suffixes Ki, Mi, Gi); beyond it the oldest undelivered windows are dropped and counted")
    // MARK: OTLP
    public static let otlpEndpoint = SettingKey(
        "otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", value: "url", "OTLP/HTTP base URL; metrics go to its /v1/metrics (output otlp)")
    public static let otlpMetricsEndpoint = SettingKey(
        "otlp-metrics-endpoint", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", value: "url", "OTLP/HTTP metrics URL, used as given; beats --otlp-endpoint")
    public static let otlpHeaders = SettingKey(
        "otlp-header", "OTEL_EXPORTER_OTLP_HEADERS", .list(separator: ","), value: "key=value",
        "Header on every OTLP request, 'key=value' (value percent-decoded), repeatable (the variable ','-separated)")
    public static let otlpTimeout = SettingKey(
        "otlp-timeout", "OTEL_EXPORTER_OTLP_TIMEOUT", default: "10000", value: "ms", "Bound on one OTLP request, in milliseconds")
    public static let otlpCompression = SettingKey(
        "otlp-compression", "OTEL_EXPORTER_OTLP_COMPRESSION", default: "none", value: "kind", "OTLP request compression: gzip or none")
    public static let otelServiceName = SettingKey(
        "otel-service-name", "OTEL_SERVICE_NAME", default: "rapl-exporter", value: "name", "The OTLP resource's service.name")
    public static let otelResourceAttributes = SettingKey(
        "otel-resource-attributes", "OTEL_RESOURCE_ATTRIBUTES", value: "k=v,…",
        "More OTLP resource attributes, 'key=value' pairs ','-separated (values percent-decoded)")
    public static let duration = SettingKey("duration", "RUN_DURATION_S", value: "seconds", "Run this many seconds, then stop exactly as on SIGTERM")
    public static let maxSampleAge = SettingKey(
        "max-sample-age", "MAX_SAMPLE_AGE_S", default: "1800", value: "seconds", "Drop samples older than this instead of retrying them")
    public static let requestTimeout = SettingKey(
        "request-timeout", "REQUEST_TIMEOUT_S", default: "10", value: "seconds", "Bound on one remote-write request, connect to response")
    public static let shutdownTimeout = SettingKey(
        "shutdown-timeout", "SHUTDOWN_TIMEOUT_S", default: "8", value: "seconds",
        "The whole shutdown, pushing what is pending included, ends within this (inside Docker's 10 s stop grace)")
    public static let maxSamplesPerRequest = SettingKey(
        "max-samples-per-request", "MAX_SAMPLES_PER_REQUEST", default: "2000", value: "n", "Largest request; bigger batches are split")
    public static let stuckAfter = SettingKey(
        "stuck-after", "STUCK_AFTER_S", default: "5", value: "seconds", "Warn when a counter has not changed for this long")
    public static let maxDomainPower = SettingKey(
        "max-domain-power", "MAX_DOMAIN_POWER_W", default: "5000", value: "watts",
        "Most watts one counter can report; a step that would need more is a glitch, not energy")
    public static let powerLimitsInterval = SettingKey(
        "power-limits-interval", "POWER_LIMITS_INTERVAL_S", default: "5", value: "seconds",
        "Seconds between reads of the power limits, TDP and throttle counters (off the sampling path); 0 turns them off")

    // MARK: Connection
    public static let tlsCAFile = SettingKey(
        "tls-ca-file", "REMOTE_WRITE_TLS_CA_FILE", default: "the system's", value: "path", "PEM file of the CA(s) to trust for https")
    public static let tlsCertFile = SettingKey(
        "tls-cert-file", "REMOTE_WRITE_TLS_CERT_FILE", value: "path", "Client certificate (PEM) for mutual TLS")
    public static let tlsKeyFile = SettingKey("tls-key-file", "REMOTE_WRITE_TLS_KEY_FILE", value: "path", "Client key (PEM) for mutual TLS")
    public static let tlsServerName = SettingKey(
        "tls-server-name", "REMOTE_WRITE_TLS_SERVER_NAME", value: "name", "Name to verify in the server certificate and send as SNI")
    public static let tlsInsecureSkipVerify = SettingKey(
        "tls-insecure-skip-verify", "REMOTE_WRITE_TLS_INSECURE_SKIP_VERIFY", .boolean, "Do not verify the server certificate. For tests only")
    public static let basicAuthUsername = SettingKey(
        "basic-auth-username", "REMOTE_WRITE_USERNAME", value: "name", "Basic-auth user name; the password comes from --basic-auth-password-file")
    public static let basicAuthPasswordFile = SettingKey(
        "basic-auth-password-file", "REMOTE_WRITE_PASSWORD_FILE", value: "path",
        "File holding the basic-auth password; read at every push, never logged")
    public static let bearerTokenFile = SettingKey(
        "bearer-token-file", "REMOTE_WRITE_BEARER_TOKEN_FILE", value: "path", "File holding a bearer token; read at every push, never logged")
    public static let labels = SettingKey(
        "label", "EXTRA_LABELS", .list(separator: ","), value: "label",
        "Extra label on every series, 'name=value', repeatable, e.g. 'node=web-1' (the variable ','-separated)")
    public static let headers = SettingKey(
        "header", "REMOTE_WRITE_HEADERS", .list(separator: ";"), value: "header",
        "Extra request header 'Name: value', repeatable, e.g. 'X-Scope-OrgID: tenant-1' (the variable ';'-separated)")

    // MARK: Process
    public static let healthFile = SettingKey(
        "health-file", "HEALTH_FILE", default: "/tmp/rapl-exporter-UID/health", value: "path", commands: [.run, .healthcheck],
        "Heartbeat file read by 'rapl-exporter healthcheck'")
    public static let keepCapabilities = SettingKey(
        "keep-capabilities", "KEEP_CAPABILITIES", .boolean, "Keep capabilities after the counters are open; by default all are dropped")

    // MARK: Reading (run and probe)
    public static let backend = SettingKey(
        "backend", "RAPL_BACKEND", default: "auto", value: "name", commands: [.run, .probe, .top],
        "Backend: auto, perf, msr, sysfs, or simulated (not a measurement: energy made up from CPU time, to try the pipeline without RAPL)")
    public static let sysfsRoot = SettingKey(
        "sysfs-root", nil, default: "/sys", value: "path", commands: [.run, .probe, .compare, .top], "Where sysfs is mounted (containers: /host/sys)")
    public static let devRoot = SettingKey(
        "dev-root", nil, default: "/dev", value: "path", commands: [.run, .probe, .compare, .top], "Where /dev is (for /dev/cpu/N/msr)")
    public static let procRoot = SettingKey(
        "proc-root", nil, default: "/proc", value: "path", commands: [.run, .probe, .compare, .top], "Where procfs is (cpuinfo, perf_event_paranoid)")
    public static let componentNames = SettingKey(
        "component-names", "COMPONENT_NAMES", default: "seed", value: "style", commands: [.run, .probe, .compare, .top],
        "Component names: seed (package-0, core, …) or pyjoules (package_0, core_0, …)")
    public static let logLevel = SettingKey(
        "log-level", "LOG_LEVEL", default: "info", value: "level", commands: [.run, .probe, .compare, .top],
        "Log level: trace, debug, info, notice, warning, error, critical")

    // MARK: probe
    public static let probeInterval = SettingKey(
        "interval", nil, default: "1", value: "seconds", commands: [.probe], "Seconds between the two reads used to compute power")
    public static let probeJSON = SettingKey("json", nil, .boolean, commands: [.probe, .compare], "Print the report as JSON")

    // MARK: top
    public static let topRefresh = SettingKey(
        "refresh", nil, default: "1", value: "seconds", commands: [.top], "Seconds between refreshes of the view")
    public static let topIterations = SettingKey(
        "iterations", nil, value: "n", commands: [.top], "Stop after this many refreshes (like top -n); until q or a signal when unset")

    // MARK: compare
    public static let compareDuration = SettingKey(
        "duration", nil, default: "10", value: "seconds", commands: [.compare], "Seconds to read every backend side by side")
    public static let compareTolerance = SettingKey(
        "tolerance", nil, default: "1", value: "percent", commands: [.compare],
        "Exit with status 1 when two backends disagree on a domain by more than this many percent")

    /// Every setting, in the order of docs/configuration.md.
    public static let all: [SettingKey] = [
        remoteWriteURL, remoteWriteProtocol, scrapeInterval, pushInterval, maxRetryBatches, serviceLabel, metricName, cumulative, output, listen,
        webConfigFile, spoolDirectory, spoolMaxBytes, otlpEndpoint, otlpMetricsEndpoint, otlpHeaders, otlpTimeout, otlpCompression, otelServiceName,
        otelResourceAttributes,
        duration, maxSampleAge, requestTimeout, shutdownTimeout, maxSamplesPerRequest, stuckAfter, maxDomainPower, powerLimitsInterval,
        tlsCAFile, tlsCertFile, tlsKeyFile, tlsServerName, tlsInsecureSkipVerify, basicAuthUsername, basicAuthPasswordFile,
        bearerTokenFile, headers, labels,
        healthFile, keepCapabilities,
        backend, componentNames, sysfsRoot, devRoot, procRoot, logLevel,
        probeInterval, probeJSON, compareDuration, compareTolerance, topRefresh, topIterations,
    ]
}
