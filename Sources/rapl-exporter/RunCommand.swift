import ArgumentParser
import Exporter
import Logging
import RAPLBackend
import ServiceLifecycle
import UnixSignals

/// Only parsed: `Main` runs it through `prepare()` and `serve(_:)`, never through `run()`.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Sample the energy counters and push them with remote write (or print them). The default command.",
        discussion: """
        Every option falls back to the environment variable in parentheses, then to the default; a flag beats
        its variable. With no REMOTE_WRITE_URL, windows are printed to stdout as JSON lines.
        Invalid values exit with status 2 before anything starts. See docs/configuration.md.
        """
    )

    @OptionGroup var reading: ReadingOptions

    @Option(help: ArgumentHelp("Remote-write endpoint, http(s)://host:port/path (REMOTE_WRITE_URL).", valueName: "url"))
    var remoteWriteURL: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Seconds per measurement window (SCRAPE_INTERVAL_S; default 0.1).", valueName: "seconds"))
    var scrapeInterval: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Seconds between remote-write batches (PUSH_INTERVAL_S; default 4).", valueName: "seconds"))
    var pushInterval: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Batches that may wait for delivery; beyond it the oldest is dropped (MAX_RETRY_BATCHES; default 5).", valueName: "n"))
    var maxRetryBatches: String?

    @Option(help: ArgumentHelp("Value of the source label (SERVICE_LABEL; default cpu-pyjoules).", valueName: "name"))
    var serviceLabel: String?

    @Option(help: ArgumentHelp("Name of the per-window energy metric (METRIC_DEFAULT; default pyjoules_remote_write_energy_uj).", valueName: "name"))
    var metricName: String?

    @Flag(help: "Also write the cumulative counter rapl_energy_joules_total, for rate() (EXPORT_CUMULATIVE=true).")
    var cumulative = false

    @Option(help: ArgumentHelp("remote-write or stdout (OUTPUT; default remote-write when a URL is set, else stdout).", valueName: "kind"))
    var output: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Run this many seconds, then stop exactly as on SIGTERM (RUN_DURATION_S).", valueName: "seconds"))
    var duration: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Drop samples older than this instead of retrying them (MAX_SAMPLE_AGE_S; default 1800).", valueName: "seconds"))
    var maxSampleAge: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Bound on one remote-write request, connect to response (REQUEST_TIMEOUT_S; default 10).", valueName: "seconds"))
    var requestTimeout: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("The whole shutdown, pushing what is pending included, ends within this (SHUTDOWN_TIMEOUT_S; default 8: inside Docker's 10 s stop grace).", valueName: "seconds"))
    var shutdownTimeout: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Largest request; bigger batches are split (MAX_SAMPLES_PER_REQUEST; default 2000).", valueName: "n"))
    var maxSamplesPerRequest: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Warn when a counter has not changed for this long (STUCK_AFTER_S; default 5).", valueName: "seconds"))
    var stuckAfter: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Most watts one counter can report; a step that would need more is a glitch, not energy (MAX_DOMAIN_POWER_W; default 5000).", valueName: "watts"))
    var maxDomainPower: String?

    @Flag(help: "Keep capabilities after the counters are open (KEEP_CAPABILITIES=true); by default all are dropped.")
    var keepCapabilities = false

    @Option(help: ArgumentHelp("PEM file of the CA(s) to trust for https (REMOTE_WRITE_TLS_CA_FILE; default: the system's).", valueName: "path"))
    var tlsCaFile: String?

    @Option(help: ArgumentHelp("Client certificate (PEM) for mutual TLS (REMOTE_WRITE_TLS_CERT_FILE).", valueName: "path"))
    var tlsCertFile: String?

    @Option(help: ArgumentHelp("Client key (PEM) for mutual TLS (REMOTE_WRITE_TLS_KEY_FILE).", valueName: "path"))
    var tlsKeyFile: String?

    @Option(help: ArgumentHelp("Name to verify in the server certificate and send as SNI (REMOTE_WRITE_TLS_SERVER_NAME).", valueName: "name"))
    var tlsServerName: String?

    @Flag(help: "Do not verify the server certificate (REMOTE_WRITE_TLS_INSECURE_SKIP_VERIFY=true). For tests only.")
    var tlsInsecureSkipVerify = false

    @Option(help: ArgumentHelp("Basic-auth user name (REMOTE_WRITE_USERNAME); the password comes from --basic-auth-password-file.", valueName: "name"))
    var basicAuthUsername: String?

    @Option(help: ArgumentHelp("File holding the basic-auth password (REMOTE_WRITE_PASSWORD_FILE); read at every push, never logged.", valueName: "path"))
    var basicAuthPasswordFile: String?

    @Option(help: ArgumentHelp("File holding a bearer token (REMOTE_WRITE_BEARER_TOKEN_FILE); read at every push, never logged.", valueName: "path"))
    var bearerTokenFile: String?

    @Option(help: ArgumentHelp("Heartbeat file read by 'rapl-exporter healthcheck' (HEALTH_FILE; default /tmp/rapl-exporter-UID/health).", valueName: "path"))
    var healthFile: String?

    @Option(name: .customLong("label"), help: ArgumentHelp("Extra label on every series, 'name=value', repeatable, e.g. 'node=web-1' (EXTRA_LABELS, ','-separated).", valueName: "label"))
    var labels: [String] = []

    @Option(name: .customLong("header"), help: ArgumentHelp("Extra request header 'Name: value', repeatable, e.g. 'X-Scope-OrgID: tenant-1' (REMOTE_WRITE_HEADERS, ';'-separated).", valueName: "header"))
    var headers: [String] = []

    enum Output: String { case remoteWrite = "remote-write", stdout }

    struct Connection {
        var tls: TLSSettings
        var authorization: RemoteWriteAuthorization
        var headers: [(String, String)]
    }

    struct Resolved {
        var connection: Connection?
        var preference: BackendPreference
        var style: NameStyle
        var scrape: Duration
        var output: Output
        var settings: RemoteWriteSettings?
        var duration: Duration?
        var stuckAfter: Duration
        var maximumPower: Double
        /// Set whenever a URL is given, whatever the output: every option given is checked.
        var endpoint: RemoteWriteEndpoint?
    }

    /// A positive, finite number of seconds from a flag, its variable, or the default.
    func seconds(_ flag: String?, _ variable: String, _ name: String, default fallback: Double?, max limit: Double = 86400 * 365, unit: String = "seconds") throws -> Double? {
        guard let text = flag ?? environment(variable) else { return fallback }
        guard let value = Double(text), value.isFinite, value > 0, value <= limit else {
            throw ConfigurationError(description: "invalid \(name) '\(Self.printable(text))' (--\(name) or \(variable)): expected a number of \(unit) > 0")
        }
        return value
    }

    func count(_ flag: String?, _ variable: String, _ name: String, default fallback: Int) throws -> Int {
        guard let text = flag ?? environment(variable) else { return fallback }
        guard let value = Int(text), value >= 1 else {
            throw ConfigurationError(description: "invalid \(name) '\(Self.printable(text))' (--\(name) or \(variable)): expected a whole number ≥ 1")
        }
        return value
    }

    func resolve() throws -> Resolved {
        let scrape = try seconds(scrapeInterval, "SCRAPE_INTERVAL_S", "scrape-interval", default: 0.1)!
        guard scrape >= 0.0001 else {
            throw ConfigurationError(description: "invalid scrape-interval \(scrape): the shortest supported window is 0.0001 s (RAPL itself updates about every 1 ms)")
        }
        let push = try seconds(pushInterval, "PUSH_INTERVAL_S", "push-interval", default: 4)!
        guard push >= scrape else {
            throw ConfigurationError(description: "invalid push-interval \(push) s: it is shorter than the scrape interval \(scrape) s (PUSH_INTERVAL_S must be ≥ SCRAPE_INTERVAL_S)")
        }
        let batches = try count(maxRetryBatches, "MAX_RETRY_BATCHES", "max-retry-batches", default: 5)
        let perRequest = try count(maxSamplesPerRequest, "MAX_SAMPLES_PER_REQUEST", "max-samples-per-request", default: 2000)
        let age = try seconds(maxSampleAge, "MAX_SAMPLE_AGE_S", "max-sample-age", default: 1800)!
        let timeout = try seconds(requestTimeout, "REQUEST_TIMEOUT_S", "request-timeout", default: 10)!
        let shutdown = try seconds(shutdownTimeout, "SHUTDOWN_TIMEOUT_S", "shutdown-timeout", default: 8)!
        let stuck = try seconds(stuckAfter, "STUCK_AFTER_S", "stuck-after", default: 5)!
        let runFor = try seconds(duration, "RUN_DURATION_S", "duration", default: nil)
        let power = try seconds(maxDomainPower, "MAX_DOMAIN_POWER_W", "max-domain-power", default: EnergyMeter.defaultMaximumPower, unit: "watts")!
        let url = remoteWriteURL ?? environment("REMOTE_WRITE_URL")
        let outputText = output ?? environment("OUTPUT") ?? (url == nil ? "stdout" : "remote-write")
        guard let out = Output(rawValue: outputText.lowercased()) else {
            throw ConfigurationError(description: "invalid output '\(outputText)' (--output or OUTPUT): expected remote-write or stdout")
        }
        let label = serviceLabel ?? environment("SERVICE_LABEL") ?? "cpu-pyjoules"
        let metric = metricName ?? environment("METRIC_DEFAULT") ?? "pyjoules_remote_write_energy_uj"
        guard Self.isValidMetricName(metric) else {
            throw ConfigurationError(description: "invalid metric name '\(metric)' (--metric-name or METRIC_DEFAULT): expected [a-zA-Z_:][a-zA-Z0-9_:]*")
        }
        guard !label.isEmpty, Self.isValidLabelValue(label) else {
            throw ConfigurationError(description: "invalid service label '\(Self.printable(label))' (--service-label or SERVICE_LABEL): expected non-empty UTF-8 text without control characters")
        }
        var extraLabels: [(String, String)] = []
        for pair in labels.isEmpty ? (environment("EXTRA_LABELS").map { $0.split(separator: ",").map(String.init) } ?? []) : labels {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, Self.isValidLabelName(parts[0]), !parts[1].isEmpty else {
                throw ConfigurationError(description: "invalid label '\(Self.printable(pair))' (--label or EXTRA_LABELS): expected name=value with name [a-zA-Z_][a-zA-Z0-9_]*")
            }
            guard Self.isValidLabelValue(parts[1]) else {
                throw ConfigurationError(description: "invalid label '\(Self.printable(pair))' (--label or EXTRA_LABELS): the value must be UTF-8 text without control characters")
            }
            guard !SeriesLabels.reservedLabelNames.contains(parts[0]) else {
                throw ConfigurationError(description: "label '\(parts[0])' is set by rapl-exporter itself")
            }
            guard !extraLabels.contains(where: { $0.0 == parts[0] }) else {
                throw ConfigurationError(description: "label '\(parts[0])' is given twice (--label or EXTRA_LABELS): a series has one value per label")
            }
            extraLabels.append((parts[0], parts[1]))
        }
        let exportCumulative = try boolean(cumulative, "EXPORT_CUMULATIVE", "cumulative")
        let style = try reading.resolvedNameStyle()
        var settings: RemoteWriteSettings?
        var connection: Connection?
        var endpoint: RemoteWriteEndpoint?
        if let url {
            guard let parsed = RemoteWriteEndpoint(url) else {
                throw ConfigurationError(description: "invalid remote-write URL '\(RemoteWriteEndpoint.redacted(url))' (--remote-write-url or REMOTE_WRITE_URL): expected http://host[:port]/path or https://…, printable ASCII without spaces (percent-encode the rest), without user info (use --basic-auth-username)")
            }
            endpoint = parsed
            // Checked whatever the output: an option given wrongly is an error, not a surprise later.
            connection = try resolveConnection(parsed)
        }
        if out == .remoteWrite {
            guard let endpoint else {
                throw ConfigurationError(description: "output remote-write needs REMOTE_WRITE_URL (or --remote-write-url)")
            }
            settings = RemoteWriteSettings(
                endpoint: endpoint,
                pushInterval: Duration(secondsValue: push),
                maxQueuedBatches: batches,
                maxSamplesPerRequest: perRequest,
                maxSampleAge: Duration(secondsValue: age),
                requestTimeout: Duration(secondsValue: timeout),
                shutdownTimeout: Duration(secondsValue: shutdown),
                labels: {
                    var l = SeriesLabels(metricName: metric, source: label, nameStyle: style, cumulative: exportCumulative)
                    l.extra = extraLabels
                    return l
                }()
            )
        }
        return Resolved(
            connection: connection,
            preference: try reading.resolvedBackend(),
            style: style,
            scrape: Duration(secondsValue: scrape),
            output: out,
            settings: settings,
            duration: runFor.map { Duration(secondsValue: $0) },
            stuckAfter: Duration(secondsValue: stuck),
            maximumPower: power,
            endpoint: endpoint
        )
    }

    /// A flag, or its variable: 1/true/yes/on or 0/false/no/off (any case); anything else exits 2.
    func boolean(_ flag: Bool, _ variable: String, _ name: String) throws -> Bool {
        if flag { return true }
        guard let text = environment(variable) else { return false }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default:
            throw ConfigurationError(description: "invalid \(variable) '\(Self.printable(text))' (or --\(name)): expected true or false (1/0, yes/no, on/off)")
        }
    }

    /// `text` with control characters escaped, so that a message about it stays one line.
    static func printable(_ text: String) -> String {
        text.unicodeScalars.map { isControl($0) || $0 == "\t" ? "\\x\(String($0.value, radix: 16))" : String($0) }.joined()
    }

    /// UTF-8 (nothing replaced while decoding) without control characters: what a label value may hold.
    static func isValidLabelValue(_ text: String) -> Bool {
        !text.unicodeScalars.contains { isControl($0) || $0 == "\t" || $0 == "\u{FFFD}" }
    }

    /// TLS, credentials and extra headers, checked now: unreadable files and malformed headers exit 2.
    func resolveConnection(_ endpoint: RemoteWriteEndpoint) throws -> Connection {
        let tls = TLSSettings(
            caFile: tlsCaFile ?? environment("REMOTE_WRITE_TLS_CA_FILE"),
            certificateFile: tlsCertFile ?? environment("REMOTE_WRITE_TLS_CERT_FILE"),
            keyFile: tlsKeyFile ?? environment("REMOTE_WRITE_TLS_KEY_FILE"),
            serverName: tlsServerName ?? environment("REMOTE_WRITE_TLS_SERVER_NAME"),
            insecureSkipVerify: try boolean(tlsInsecureSkipVerify, "REMOTE_WRITE_TLS_INSECURE_SKIP_VERIFY", "tls-insecure-skip-verify")
        )
        if (tls.certificateFile == nil) != (tls.keyFile == nil) {
            throw ConfigurationError(description: "mutual TLS needs both --tls-cert-file and --tls-key-file (REMOTE_WRITE_TLS_CERT_FILE, REMOTE_WRITE_TLS_KEY_FILE)")
        }
        if !endpoint.tls, tls != TLSSettings() {
            throw ConfigurationError(description: "TLS options are set but the remote-write URL \(endpoint) is http://; use https://")
        }
        let username = basicAuthUsername ?? environment("REMOTE_WRITE_USERNAME")
        let passwordFile = basicAuthPasswordFile ?? environment("REMOTE_WRITE_PASSWORD_FILE")
        let tokenFile = bearerTokenFile ?? environment("REMOTE_WRITE_BEARER_TOKEN_FILE")
        let authorization: RemoteWriteAuthorization
        switch (username, passwordFile, tokenFile) {
        case (nil, nil, nil): authorization = .none
        case (let user?, let file?, nil): authorization = .basic(username: user, passwordFile: file)
        case (nil, nil, let file?): authorization = .bearer(tokenFile: file)
        case (_, _, _?): throw ConfigurationError(description: "choose basic auth or a bearer token, not both")
        default: throw ConfigurationError(description: "basic auth needs both --basic-auth-username and --basic-auth-password-file (REMOTE_WRITE_USERNAME, REMOTE_WRITE_PASSWORD_FILE)")
        }
        if let username, username.contains(":") || !Self.isValidLabelValue(username) {
            throw ConfigurationError(description: "invalid basic-auth user name (--basic-auth-username or REMOTE_WRITE_USERNAME): no ':' and no control characters")
        }
        // The files themselves are checked after the capabilities are dropped, as the process that
        // reads them at every push (see prepare()).
        var pairs = headers
        if headers.isEmpty, let env = environment("REMOTE_WRITE_HEADERS") {
            pairs = env.split(whereSeparator: { $0 == ";" || $0 == "\n" }).map(String.init).filter { !trimmed(Substring($0)).isEmpty }
        }
        var parsed: [(String, String)] = []
        for pair in pairs {
            guard let colon = pair.firstIndex(of: ":") else {
                throw ConfigurationError(description: "invalid header '\(Self.printable(pair))' (--header or REMOTE_WRITE_HEADERS): expected 'Name: value'")
            }
            let name = trimmed(pair[..<colon])
            let value = trimmed(pair[pair.index(after: colon)...])
            guard !name.isEmpty, name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_".unicodeScalars.contains($0)) }),
                  !value.isEmpty, Self.isValidLabelValue(value) else {
                throw ConfigurationError(description: "invalid header '\(Self.printable(pair))' (--header or REMOTE_WRITE_HEADERS): expected 'Name: value', the name letters, digits, '-' and '_', the value non-empty UTF-8 without control characters")
            }
            guard !reservedHeaderNames.contains(name.lowercased()) else {
                throw ConfigurationError(description: "header '\(name)' is set by rapl-exporter itself (use the auth options for Authorization)")
            }
            parsed.append((name, value))
        }
        return Connection(tls: tls, authorization: authorization, headers: parsed)
    }

    static func isValidLabelName(_ name: String) -> Bool {
        isValidMetricName(name) && !name.contains(":") && !name.hasPrefix("__")
    }

    static func isValidMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !name.isEmpty else { return false }
        func ok(_ c: Unicode.Scalar, first: Bool) -> Bool {
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || c == ":" || (!first && c >= "0" && c <= "9")
        }
        return ok(first, first: true) && name.unicodeScalars.dropFirst().allSatisfy { ok($0, first: false) }
    }

    /// What `prepare()` built: ready to run.
    struct Started: Sendable {
        var group: ServiceGroup
        var duration: Duration?
        var writer: RemoteWriter<ContinuousClock>?
        var stdout: StdoutSink?
    }

    /// Everything that needs privileges, synchronously and on the only thread: configuration, backend
    /// selection (each backend opened with only its capability), then every capability dropped; then
    /// the services are built (NIO's threads start here, unprivileged).
    func prepare() throws -> Started {
        let config = try withConfiguration {
            let resolved = try resolve()
            try reading.bootstrapLogging()
            return resolved
        }
        let logger = Logger(label: "rapl-exporter")
        // The transport (TLS material loaded now: a bad CA or key exits 2 before anything starts).
        var transport: HTTPTransport?
        if let endpoint = config.endpoint, let connection = config.connection {
            transport = try withConfiguration { try Self.makeTransport(endpoint, connection) }
            if connection.tls.insecureSkipVerify {
                logger.warning("TLS certificate verification is OFF (--tls-insecure-skip-verify): anyone on the path can read and change the data")
            }
        }
        let paths = reading.paths
        let facts = SystemFacts.current(paths: paths)
        var selector = BackendSelector(paths: paths, facts: facts, logger: Logger(label: "rapl-exporter.backend"))
        selector.leastPrivilege = true
        let selection = selector.select(config.preference)
        guard let backend = selection.backend else {
            logger.critical("no backend can read RAPL counters here; run 'rapl-exporter probe' for the reasons and fixes")
            throw ExitCode(1)
        }
        let keep = try withConfiguration { try boolean(keepCapabilities, "KEEP_CAPABILITIES", "keep-capabilities") }
        if keep {
            logger.notice("capabilities kept (--keep-capabilities): permitted \(Privileges.permitted), effective \(Privileges.effective)")
        } else {
            let threads = Privileges.threadCount
            do {
                try Privileges.dropAll()
                let used = Privileges.needed(for: backend.kind, permitted: facts.capabilities).intersection(facts.capabilities)
                logger.info("capabilities: had \(facts.capabilities), opened \(backend.kind) with \(used), now dropped all (CapEff \(Privileges.effectiveFromProc() ?? "?"))")
                if threads > 1 {
                    logger.warning("capabilities were dropped with \(threads) threads running; threads started before may keep theirs")
                }
            } catch {
                logger.error("could not drop capabilities: \(error); continuing with permitted \(Privileges.permitted)")
            }
        }
        // The credential files, read now as the process that reads them at every push: one readable
        // only with a capability just dropped fails here (exit 2), not at every push.
        if let connection = config.connection {
            try withConfiguration {
                do { _ = try connection.authorization.headerValue() } catch {
                    throw ConfigurationError(description: "\(error) (checked as the unprivileged process that reads it at every push)")
                }
            }
        }
        let meter = EnergyMeter(backend: backend, stuckAfter: config.stuckAfter, maximumPower: config.maximumPower)
        let health = makeHealthFile(config, logger: logger)
        let clock = ContinuousClock()
        var services: [any Service] = []
        let sink: any WindowSink
        var writer: RemoteWriter<ContinuousClock>?
        var stdout: StdoutSink?
        if let settings = config.settings, let transport {
            let remote = RemoteWriter(settings: settings, transport: transport, clock: clock, health: health)
            services.append(remote)
            sink = remote
            writer = remote
            logger.info("pushing to \(settings.endpoint) every \(settings.pushInterval), source=\(settings.labels.source), metric \(settings.labels.metricName)")
        } else {
            let shutdown = ShutdownTrigger()
            let printer = StdoutSink(style: config.style) { _ in shutdown.fire() }
            services.append(shutdown)
            sink = printer
            stdout = printer
            logger.info("printing one JSON line per window to stdout")
        }
        // Shut down in reverse order: the sampler closes its window first, then the writer flushes.
        services.append(Sampler(meter: meter, interval: config.scrape, sink: sink, health: health))
        // Signals are handled in serve(): the first asks for a graceful shutdown, a second one stops now.
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map { service in
                var c = ServiceGroupConfiguration.ServiceConfiguration(service: service)
                // The shutdown trigger ends its wait to shut the group down, not as a failure.
                if service is ShutdownTrigger { c.successTerminationBehavior = .gracefullyShutdownGroup }
                return c
            },
            logger: Logger(label: "rapl-exporter.lifecycle")
        )
        // The writer bounds its own flush by the shutdown timeout; this is the backstop.
        groupConfiguration.maximumGracefulShutdownDuration = (config.settings?.shutdownTimeout ?? .zero) + .seconds(5)
        return Started(group: ServiceGroup(configuration: groupConfiguration), duration: config.duration, writer: writer, stdout: stdout)
    }

    /// The heartbeat file: the flag or variable's path as given, or the default in a directory of this
    /// user's (see `HealthFile.defaultPath`); none, with an error logged, when that directory cannot be
    /// trusted.
    func makeHealthFile(_ config: Resolved, logger: Logger) -> HealthFile? {
        let path: String
        if let given = healthFile ?? environment("HEALTH_FILE") {
            path = given
        } else {
            if let problem = HealthFile.prepareDefaultDirectory() {
                logger.error("no health file: \(problem); 'rapl-exporter healthcheck' will report unhealthy (set --health-file to a directory of this user's)")
                return nil
            }
            path = HealthFile.defaultPath
        }
        return HealthFile(path: path, scrapeInterval: config.scrape, pushInterval: config.settings?.pushInterval)
    }

    /// The HTTP transport, each TLS file loaded on its own so that a failure names the file and why.
    static func makeTransport(_ endpoint: RemoteWriteEndpoint, _ connection: Connection) throws -> HTTPTransport {
        let tls = connection.tls
        for (file, what) in [(tls.caFile, "CA file (--tls-ca-file, REMOTE_WRITE_TLS_CA_FILE)"), (tls.certificateFile, "client certificate (--tls-cert-file, REMOTE_WRITE_TLS_CERT_FILE)"), (tls.keyFile, "client key (--tls-key-file, REMOTE_WRITE_TLS_KEY_FILE)")] {
            guard let file else { continue }
            if let problem = TLSFiles.problem(file, isKey: what.hasPrefix("client key")) {
                throw ConfigurationError(description: "cannot load the \(what) \(file): \(problem)")
            }
        }
        do {
            return try HTTPTransport(endpoint: endpoint, tls: tls, authorization: connection.authorization, extraHeaders: connection.headers)
        } catch {
            throw ConfigurationError(description: "cannot set up TLS for \(endpoint): \(error)")
        }
    }

    static func serve(_ started: Started) async throws {
        let logger = Logger(label: "rapl-exporter")
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        let group = started.group
        let writer = started.writer
        Task {
            var first = true
            for await signal in signals {
                if first {
                    first = false
                    logger.notice("\(signal): shutting down; a second signal stops at once")
                    await group.triggerGracefulShutdown()
                } else {
                    // The convention: the second one means now. Count what is lost, then go.
                    await writer?.abandon()
                    logger.notice("\(signal) again: exiting now")
                    RAPLExporter.exit(withError: ExitCode(128 + signal.rawValue))
                }
            }
        }
        if let runFor = started.duration {
            Task {
                try? await Task.sleep(for: runFor)
                await group.triggerGracefulShutdown()
            }
        }
        try await group.run()
        if let failure = started.stdout?.failure {
            logger.error("exiting with status 1: \(failure)")
            throw ExitCode(1)
        }
    }
}

/// A service that only waits, so that something other than a signal (stdout failing) can shut the
/// group down gracefully: `fire()` ends its wait, and a service group ends when a service returns.
final class ShutdownTrigger: Service, Sendable {
    private let fired = AsyncStream<Void>.makeStream()

    func fire() { fired.continuation.yield() }

    func run() async throws {
        await withGracefulShutdownHandler {
            var iterator = fired.stream.makeAsyncIterator()
            _ = await iterator.next()
        } onGracefulShutdown: {
            self.fired.continuation.finish()
        }
    }
}
