import ArgumentParser
import Exporter
import Logging
import NIOPosix
import RAPLBackend
import ServiceLifecycle
import Support
import UnixSignals

/// `run`'s composition root (`prepare()`) and its life (`serve(_:)`): what `Main` calls.
extension RunCommand {
    /// What `prepare()` built: ready to run.
    struct PreparedRun: Sendable {
        var group: ServiceGroup
        var duration: Duration?
        var writer: RemoteWriter<EventLoopClock>?
        var stdout: StdoutSink?
        /// Where the daemon's async work runs (see `EventLoopTaskExecutor`).
        var executor: EventLoopTaskExecutor
    }

    /// The composition root. Everything that needs privileges runs synchronously on the only thread:
    /// the settings, the TLS material, the backend (each opened with only its capability), then every
    /// capability is dropped; the secret files are checked as the process that will read them; then the
    /// services are built (NIO's threads start later, unprivileged).
    func prepare() throws -> PreparedRun {
        let settings = try withConfiguration { () throws(ConfigurationError) in
            let settings = try Settings.resolve(commandLine, environment: ProcessEnvironment.current)
            bootstrapLogging(settings.reading.logLevel)
            return settings
        }
        let logger = Logger(label: "rapl-exporter")
        if settings.output == .stdout, Main.closedStreams.contains(1) {
            // Printing to /dev/null would lose every window without a word.
            logger.critical(
                "cannot write to standard output: it is closed; every window would be lost (give the daemon a stdout, or set REMOTE_WRITE_URL)")
            throw ExitCode(1)
        }
        let transport = try Self.makeTransport(settings, logger: logger)
        let facts = SystemFacts.current(paths: settings.reading.paths)
        let backend = try Self.openBackend(settings, facts: facts, logger: logger)
        let limits = Self.openPowerLimits(settings, facts: facts, logger: logger)
        Self.dropCapabilities(unless: settings.keepCapabilities, backend: backend, facts: facts, logger: logger)
        try Self.checkSecretFiles(settings)
        let web = try withConfiguration { () throws(ConfigurationError) in try settings.webConfigFile.map(WebConfig.load) ?? WebConfig() }
        let spool = try Self.openSpool(settings)
        let meter = EnergyMeter(backend: backend, stuckAfter: settings.stuckAfter, maximumPower: settings.maximumPower)
        return try makeServices(
            settings, web: web, meter: meter, limits: limits, transport: transport, spool: spool, bootID: facts.bootID, logger: logger)
    }

    /// How far apart the sampler hands windows over: `Sampler.batching`'s rule, with a window seen as it
    /// closes for a stdout line per window and for /metrics serving the latest one.
    static func batching(_ settings: Settings, stdout: Bool) -> Duration {
        Sampler.batching(pushInterval: settings.remoteWrite?.pushInterval, eachWindowAtOnce: stdout || settings.listen != nil)
    }

    /// The power-limit and throttle reader (its MSR devices opened now, while CAP_SYS_RAWIO is held),
    /// unless `--power-limits-interval 0`; what it found is logged once.
    static func openPowerLimits(_ settings: Settings, facts: SystemFacts, logger: Logger) -> PowerLimitReader? {
        guard settings.powerLimitsInterval != nil else { return nil }
        let reader = PowerLimitReader(paths: settings.reading.paths, facts: facts)
        logger.info("\(reader.describe(style: settings.reading.nameStyle))")
        for line in reader.absent { logger.info("not exported: \(line)") }
        return reader.isEmpty ? nil : reader
    }

    /// The spool directory, opened (made, locked, read, a segment written) as the unprivileged process
    /// that writes it: one it cannot use exits 2 now with the reason.
    static func openSpool(_ settings: Settings) throws(ExitCode) -> Spool? {
        guard let spoolSettings = settings.spool else { return nil }
        do {
            return try Spool.open(spoolSettings)
        } catch {
            StandardError.write("rapl-exporter: \(error.description)\n")
            throw ExitCode(2)
        }
    }

    /// The remote-write transport when a URL is given (TLS material loaded now: a bad CA or key exits 2).
    static func makeTransport(_ settings: Settings, logger: Logger) throws(ExitCode) -> HTTPTransport? {
        guard let endpoint = settings.endpoint, let connection = settings.connection else { return nil }
        let transport = try withConfiguration { () throws(ConfigurationError) in try makeTransport(endpoint, connection) }
        if connection.tls.insecureSkipVerify {
            logger.warning("TLS certificate verification is OFF (--tls-insecure-skip-verify): anyone on the path can read and change the data")
        }
        return transport
    }

    /// The backend `--backend` names, or the one `auto` chooses; exit 1 when none can read.
    static func openBackend(_ settings: Settings, facts: SystemFacts, logger: Logger) throws(ExitCode) -> any EnergyBackend {
        let selector = BackendSelector(paths: settings.reading.paths, facts: facts, logger: Logger(label: "rapl-exporter.backend"))
        guard let backend = selector.select(settings.reading.backend).backend else {
            logger.critical("no backend can read RAPL counters here; run 'rapl-exporter probe' for the reasons and fixes")
            throw ExitCode(1)
        }
        return backend
    }

    /// Drops every capability (while the process has one thread), unless told to keep them.
    static func dropCapabilities(unless keep: Bool, backend: any EnergyBackend, facts: SystemFacts, logger: Logger) {
        if keep {
            logger.notice("capabilities kept (--keep-capabilities): permitted \(Privileges.permitted), effective \(Privileges.effective)")
            return
        }
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

    /// The credential files, read now as the process that reads them at every push: one readable only
    /// with a capability just dropped fails here (exit 2), not at every push.
    static func checkSecretFiles(_ settings: Settings) throws(ExitCode) {
        guard let connection = settings.connection else { return }
        try withConfiguration { () throws(ConfigurationError) in
            do { _ = try connection.authorization.headerValue() } catch {
                throw ConfigurationError("\(error) (checked as the unprivileged process that reads it at every push)")
            }
        }
    }

    /// The writer (or the stdout printer), the /metrics endpoint and the sampler in a service group that
    /// shuts down in reverse order: the sampler closes its last window first, then the writer flushes.
    func makeServices(
        _ settings: Settings, web: WebConfig, meter: sending EnergyMeter, limits: sending PowerLimitReader?, transport: HTTPTransport?,
        spool: sending Spool?, bootID: String?,
        logger: Logger
    ) throws(ExitCode) -> PreparedRun {
        let health = makeHealthFile(settings, logger: logger)
        // One event loop thread for all the async work (started now: the capabilities are dropped).
        let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1).next()
        let executor = EventLoopTaskExecutor(loop)
        var services: [any Service] = []
        var sinks: [any WindowSink] = []
        var writer: RemoteWriter<EventLoopClock>?
        var stdout: StdoutSink?
        let scrape = settings.listen.map { _ in ScrapeState() }
        if let listen = settings.listen, let state = scrape {
            let context = ScrapeContext(
                nameStyle: settings.reading.nameStyle, version: ExporterVersion.current, backend: meter.backend.kind.rawValue,
                startTimeSeconds: Double(SystemWallClock().nowMicroseconds()) / 1e6, process: nil)
            do {
                let server = try MetricsServer(address: listen, eventLoop: loop, state: state, context: context, health: health, web: web)
                services.append(server)
                sinks.append(state)
                let auth = web.basicAuthUsers.isEmpty ? "" : " (basic auth, \(web.basicAuthUsers.count) user(s))"
                logger.info("serving /metrics on \(server.tls ? "https" : "http")://\(server.address)/metrics\(auth)")
            } catch let error as ConfigurationError {
                StandardError.write("rapl-exporter: \(error.description)\n")
                throw ExitCode(2)
            } catch {
                logger.critical("cannot listen on \(listen) (--listen, LISTEN_ADDRESS): \(error)")
                throw ExitCode(2)
            }
        }
        let backendName = meter.backend.kind.rawValue
        // A restart continues from the spool's last window when it can (see RestartCheck).
        let restart = spool?.anchor.map {
            RestartCheck(anchor: $0, bootID: bootID ?? "", backend: backendName, maximumPower: settings.maximumPower)
        }
        let spooling = spool != nil
        if let spool {
            logger.info(
                "spooling windows to \(spool.settings.directory) (at most \(spool.settings.maxBytes) bytes; \(spool.statistics.segments) segment(s), \(spool.statistics.bytes) bytes now)"
            )
        }
        // A line per window on stdout when nothing is pushed (the printer below).
        let printing = (settings.remoteWrite == nil || transport == nil) && settings.output == .stdout
        let batching = Self.batching(settings, stdout: printing)
        if let remoteWrite = settings.remoteWrite, let transport {
            let remote = RemoteWriter(
                settings: remoteWrite, transport: transport.running(on: loop), clock: EventLoopClock(loop), health: health,
                executor: executor, scrape: scrape, spool: spool, source: (bootID ?? "", backendName),
                pushesFollowBatches: Sampler.pushesFollowBatches(
                    batching: batching, pushInterval: remoteWrite.pushInterval, scrapeInterval: settings.scrapeInterval))
            services.append(remote)
            sinks.append(remote)
            writer = remote
            logger.info(
                remoteWrite.otlp.map {
                    "pushing OTLP to \(remoteWrite.endpoint) every \(remoteWrite.pushInterval)\($0.gzip ? ", gzip" : ""), resource \($0.resource.map { "\($0.0)=\($0.1)" }.joined(separator: ","))"
                }
                    ?? "pushing to \(remoteWrite.endpoint) every \(remoteWrite.pushInterval) (remote write \(remoteWrite.wireProtocol.rawValue)), source=\(remoteWrite.series.source), metric \(remoteWrite.series.metricName)"
            )
        } else if settings.output == .stdout {
            let shutdown = ShutdownTrigger()
            let printer = StdoutSink(style: settings.reading.nameStyle, simulated: !meter.backend.kind.measures) { _ in shutdown.fire() }
            services.append(shutdown)
            sinks.append(printer)
            stdout = printer
            logger.info("printing one JSON line per window to stdout")
        }
        let sink: any WindowSink = sinks.count == 1 ? sinks[0] : WindowSinks(sinks)
        let limitSinks: [any PowerLimitsSink] = [scrape as (any PowerLimitsSink)?, writer].compactMap { $0 }
        if let limits, let every = settings.powerLimitsInterval, !limitSinks.isEmpty {
            services.append(PowerLimitsService(reader: limits, interval: every, clock: EventLoopClock(loop), sinks: limitSinks))
        }
        services.append(
            Sampler(
                meter: meter, interval: settings.scrapeInterval, sink: sink, health: health, recordsCounters: spooling, restart: restart,
                batching: batching))
        // First, so it stops last: its final write sees the last window and push.
        if let health { services.insert(health, at: 0) }
        // Signals are handled in serve(): the first asks for a graceful shutdown, a second one stops now.
        var configuration = ServiceGroupConfiguration(
            services: services.map { service in
                var c = ServiceGroupConfiguration.ServiceConfiguration(service: service)
                // The shutdown trigger ends its wait to shut the group down, not as a failure.
                if service is ShutdownTrigger { c.successTerminationBehavior = .gracefullyShutdownGroup }
                return c
            },
            logger: Logger(label: "rapl-exporter.lifecycle")
        )
        // The writer bounds its own flush by the shutdown timeout; this is the backstop.
        configuration.maximumGracefulShutdownDuration = (settings.remoteWrite?.shutdownTimeout ?? .zero) + .seconds(5)
        return PreparedRun(
            group: ServiceGroup(configuration: configuration), duration: settings.duration, writer: writer, stdout: stdout, executor: executor)
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
        let executor = started.executor
        Task(executorPreference: executor) {
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
            Task(executorPreference: executor) {
                try? await EventLoopClock(executor.eventLoop).sleep(for: runFor)
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
