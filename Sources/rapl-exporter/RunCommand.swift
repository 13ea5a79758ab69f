import ArgumentParser
import Exporter
import Logging
import RAPLBackend
import ServiceLifecycle
import Support
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

    // Each option's help comes from the one key table (SettingKey, in the Exporter library), which also
    // resolves and checks the values: these are only the strings the command line gave.
    @Option(help: .key(.remoteWriteURL)) var remoteWriteURL: String?
    @Option(parsing: .unconditional, help: .key(.scrapeInterval)) var scrapeInterval: String?
    @Option(parsing: .unconditional, help: .key(.pushInterval)) var pushInterval: String?
    @Option(parsing: .unconditional, help: .key(.maxRetryBatches)) var maxRetryBatches: String?
    @Option(help: .key(.serviceLabel)) var serviceLabel: String?
    @Option(help: .key(.metricName)) var metricName: String?
    @Flag(help: .key(.cumulative)) var cumulative = false
    @Option(help: .key(.output)) var output: String?
    @Option(parsing: .unconditional, help: .key(.duration)) var duration: String?
    @Option(parsing: .unconditional, help: .key(.maxSampleAge)) var maxSampleAge: String?
    @Option(parsing: .unconditional, help: .key(.requestTimeout)) var requestTimeout: String?
    @Option(parsing: .unconditional, help: .key(.shutdownTimeout)) var shutdownTimeout: String?
    @Option(parsing: .unconditional, help: .key(.maxSamplesPerRequest)) var maxSamplesPerRequest: String?
    @Option(parsing: .unconditional, help: .key(.stuckAfter)) var stuckAfter: String?
    @Option(parsing: .unconditional, help: .key(.maxDomainPower)) var maxDomainPower: String?
    @Flag(help: .key(.keepCapabilities)) var keepCapabilities = false
    @Option(name: .customLong("tls-ca-file"), help: .key(.tlsCAFile)) var tlsCAFile: String?
    @Option(help: .key(.tlsCertFile)) var tlsCertFile: String?
    @Option(help: .key(.tlsKeyFile)) var tlsKeyFile: String?
    @Option(help: .key(.tlsServerName)) var tlsServerName: String?
    @Flag(help: .key(.tlsInsecureSkipVerify)) var tlsInsecureSkipVerify = false
    @Option(help: .key(.basicAuthUsername)) var basicAuthUsername: String?
    @Option(help: .key(.basicAuthPasswordFile)) var basicAuthPasswordFile: String?
    @Option(help: .key(.bearerTokenFile)) var bearerTokenFile: String?
    @Option(help: .key(.healthFile)) var healthFile: String?
    @Option(name: .customLong("label"), help: .key(.labels)) var labels: [String] = []
    @Option(name: .customLong("header"), help: .key(.headers)) var headers: [String] = []

    /// What the command line gave, by key.
    var commandLine: CommandLineValues {
        var v = reading.commandLine
        let options: [(SettingKey, String?)] = [
            (.remoteWriteURL, remoteWriteURL), (.scrapeInterval, scrapeInterval), (.pushInterval, pushInterval),
            (.maxRetryBatches, maxRetryBatches), (.serviceLabel, serviceLabel), (.metricName, metricName), (.output, output),
            (.duration, duration), (.maxSampleAge, maxSampleAge), (.requestTimeout, requestTimeout), (.shutdownTimeout, shutdownTimeout),
            (.maxSamplesPerRequest, maxSamplesPerRequest), (.stuckAfter, stuckAfter), (.maxDomainPower, maxDomainPower),
            (.tlsCAFile, tlsCAFile), (.tlsCertFile, tlsCertFile), (.tlsKeyFile, tlsKeyFile), (.tlsServerName, tlsServerName),
            (.basicAuthUsername, basicAuthUsername), (.basicAuthPasswordFile, basicAuthPasswordFile), (.bearerTokenFile, bearerTokenFile),
            (.healthFile, healthFile),
        ]
        for (key, value) in options { v[key] = value }
        for (key, set) in [
            (SettingKey.cumulative, cumulative), (.keepCapabilities, keepCapabilities), (.tlsInsecureSkipVerify, tlsInsecureSkipVerify),
        ] where set {
            v.flags.insert(key)
        }
        v.lists[.labels] = labels
        v.lists[.headers] = headers
        return v
    }

    /// What `prepare()` built: ready to run.
    struct PreparedRun: Sendable {
        var group: ServiceGroup
        var duration: Duration?
        var writer: RemoteWriter<ContinuousClock>?
        var stdout: StdoutSink?
    }

    /// Everything that needs privileges, synchronously and on the only thread: configuration, backend
    /// selection (each backend opened with only its capability), then every capability dropped; then
    /// the services are built (NIO's threads start here, unprivileged).
    func prepare() throws -> PreparedRun {
        let config = try withConfiguration { () throws(ConfigurationError) in
            let settings = try Settings.resolve(commandLine, environment: ProcessEnvironment.current)
            bootstrapLogging(settings.reading.logLevel)
            return settings
        }
        let logger = Logger(label: "rapl-exporter")
        // The transport (TLS material loaded now: a bad CA or key exits 2 before anything starts).
        var transport: HTTPTransport?
        if let endpoint = config.endpoint, let connection = config.connection {
            transport = try withConfiguration { () throws(ConfigurationError) in try Self.makeTransport(endpoint, connection) }
            if connection.tls.insecureSkipVerify {
                logger.warning("TLS certificate verification is OFF (--tls-insecure-skip-verify): anyone on the path can read and change the data")
            }
        }
        let paths = config.reading.paths
        let facts = SystemFacts.current(paths: paths)
        let selector = BackendSelector(paths: paths, facts: facts, logger: Logger(label: "rapl-exporter.backend"))
        let selection = selector.select(config.reading.backend)
        guard let backend = selection.backend else {
            logger.critical("no backend can read RAPL counters here; run 'rapl-exporter probe' for the reasons and fixes")
            throw ExitCode(1)
        }
        if config.keepCapabilities {
            logger.notice("capabilities kept (--keep-capabilities): permitted \(Privileges.permitted), effective \(Privileges.effective)")
        } else {
            let threads = Privileges.threadCount
            do {
                try Privileges.dropAll()
                let used = Privileges.needed(for: backend.kind, permitted: facts.capabilities).intersection(facts.capabilities)
                logger.info(
                    "capabilities: had \(facts.capabilities), opened \(backend.kind) with \(used), now dropped all (CapEff \(Privileges.effectiveFromProc() ?? "?"))"
                )
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
            try withConfiguration { () throws(ConfigurationError) in
                do { _ = try connection.authorization.headerValue() } catch {
                    throw ConfigurationError("\(error) (checked as the unprivileged process that reads it at every push)")
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
        if let settings = config.remoteWrite, let transport {
            let remote = RemoteWriter(settings: settings, transport: transport, clock: clock, health: health)
            services.append(remote)
            sink = remote
            writer = remote
            logger.info(
                "pushing to \(settings.endpoint) every \(settings.pushInterval), source=\(settings.series.source), metric \(settings.series.metricName)"
            )
        } else {
            let shutdown = ShutdownTrigger()
            let printer = StdoutSink(style: config.reading.nameStyle) { _ in shutdown.fire() }
            services.append(shutdown)
            sink = printer
            stdout = printer
            logger.info("printing one JSON line per window to stdout")
        }
        // Shut down in reverse order: the sampler closes its window first, then the writer flushes.
        services.append(Sampler(meter: meter, interval: config.scrapeInterval, sink: sink, health: health))
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
        groupConfiguration.maximumGracefulShutdownDuration = (config.remoteWrite?.shutdownTimeout ?? .zero) + .seconds(5)
        return PreparedRun(group: ServiceGroup(configuration: groupConfiguration), duration: config.duration, writer: writer, stdout: stdout)
    }

    /// The heartbeat file: the flag or variable's path as given, or the default in a directory of this
    /// user's (see `HealthFile.defaultPath`); none, with an error logged, when that directory cannot be
    /// trusted.
    func makeHealthFile(_ config: Settings, logger: Logger) -> HealthFile? {
        let path: String
        if let given = config.healthFile {
            path = given
        } else {
            if let problem = HealthFile.prepareDefaultDirectory() {
                logger.error(
                    "no health file: \(problem); 'rapl-exporter healthcheck' will report unhealthy (set --health-file to a directory of this user's)")
                return nil
            }
            path = HealthFile.defaultPath
        }
        return HealthFile(path: path, scrapeInterval: config.scrapeInterval, pushInterval: config.remoteWrite?.pushInterval)
    }

    /// The HTTP transport, each TLS file loaded on its own so that a failure names the file and why.
    static func makeTransport(_ endpoint: RemoteWriteEndpoint, _ connection: RemoteWriteConnection) throws(ConfigurationError) -> HTTPTransport {
        let tls = connection.tls
        for (file, what) in [
            (tls.caFile, "CA file (--tls-ca-file, REMOTE_WRITE_TLS_CA_FILE)"),
            (tls.certificateFile, "client certificate (--tls-cert-file, REMOTE_WRITE_TLS_CERT_FILE)"),
            (tls.keyFile, "client key (--tls-key-file, REMOTE_WRITE_TLS_KEY_FILE)"),
        ] {
            guard let file else { continue }
            if let problem = TLSFiles.problem(file, isKey: what.hasPrefix("client key")) {
                throw ConfigurationError("cannot load the \(what) \(file): \(problem)")
            }
        }
        do {
            return try HTTPTransport(endpoint: endpoint, tls: tls, authorization: connection.authorization, extraHeaders: connection.headers)
        } catch {
            throw ConfigurationError("cannot set up TLS for \(endpoint): \(error)")
        }
    }

    static func serve(_ started: PreparedRun) async throws {
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
