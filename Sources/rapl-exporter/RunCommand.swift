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
    @Option(help: .key(.remoteWriteProtocol)) var remoteWriteProtocol: String?
    @Option(parsing: .unconditional, help: .key(.scrapeInterval)) var scrapeInterval: String?
    @Option(parsing: .unconditional, help: .key(.pushInterval)) var pushInterval: String?
    @Option(parsing: .unconditional, help: .key(.maxRetryBatches)) var maxRetryBatches: String?
    @Option(help: .key(.serviceLabel)) var serviceLabel: String?
    @Option(help: .key(.metricName)) var metricName: String?
    @Flag(help: .key(.cumulative)) var cumulative = false
    @Option(help: .key(.output)) var output: String?
    @Option(help: .key(.listen)) var listen: String?
    @Option(name: .customLong("web.config.file"), help: .key(.webConfigFile)) var webConfigFile: String?
    @Option(help: .key(.spoolDirectory)) var spoolDir: String?
    @Option(parsing: .unconditional, help: .key(.spoolMaxBytes)) var spoolMaxBytes: String?
    @Option(help: .key(.otlpEndpoint)) var otlpEndpoint: String?
    @Option(help: .key(.otlpMetricsEndpoint)) var otlpMetricsEndpoint: String?
    @Option(name: .customLong("otlp-header"), help: .key(.otlpHeaders)) var otlpHeaders: [String] = []
    @Option(parsing: .unconditional, help: .key(.otlpTimeout)) var otlpTimeout: String?
    @Option(help: .key(.otlpCompression)) var otlpCompression: String?
    @Option(help: .key(.otelServiceName)) var otelServiceName: String?
    @Option(help: .key(.otelResourceAttributes)) var otelResourceAttributes: String?
    @Option(parsing: .unconditional, help: .key(.duration)) var duration: String?
    @Option(parsing: .unconditional, help: .key(.maxSampleAge)) var maxSampleAge: String?
    @Option(parsing: .unconditional, help: .key(.requestTimeout)) var requestTimeout: String?
    @Option(parsing: .unconditional, help: .key(.shutdownTimeout)) var shutdownTimeout: String?
    @Option(parsing: .unconditional, help: .key(.maxSamplesPerRequest)) var maxSamplesPerRequest: String?
    @Option(parsing: .unconditional, help: .key(.stuckAfter)) var stuckAfter: String?
    @Option(parsing: .unconditional, help: .key(.maxDomainPower)) var maxDomainPower: String?
    @Option(parsing: .unconditional, help: .key(.powerLimitsInterval)) var powerLimitsInterval: String?
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
            (.remoteWriteURL, remoteWriteURL), (.remoteWriteProtocol, remoteWriteProtocol), (.scrapeInterval, scrapeInterval),
            (.pushInterval, pushInterval),
            (.maxRetryBatches, maxRetryBatches), (.serviceLabel, serviceLabel), (.metricName, metricName), (.output, output), (.listen, listen),
            (.webConfigFile, webConfigFile), (.spoolDirectory, spoolDir), (.spoolMaxBytes, spoolMaxBytes), (.otlpEndpoint, otlpEndpoint),
            (.otlpMetricsEndpoint, otlpMetricsEndpoint),
            (.otlpTimeout, otlpTimeout), (.otlpCompression, otlpCompression), (.otelServiceName, otelServiceName),
            (.otelResourceAttributes, otelResourceAttributes),
            (.duration, duration), (.maxSampleAge, maxSampleAge), (.requestTimeout, requestTimeout), (.shutdownTimeout, shutdownTimeout),
            (.maxSamplesPerRequest, maxSamplesPerRequest), (.stuckAfter, stuckAfter), (.maxDomainPower, maxDomainPower),
            (.powerLimitsInterval, powerLimitsInterval),
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
        v.lists[.otlpHeaders] = otlpHeaders
        return v
    }
}
