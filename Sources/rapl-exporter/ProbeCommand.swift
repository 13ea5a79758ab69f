import ArgumentParser
import Exporter
import Logging
import RAPLBackend

struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Show what each backend can read here, why not, the fix, and the power of each domain.",
        discussion: "Exit status 0 when some backend works, 1 when none does. The first command to run in a new container."
    )

    @OptionGroup var reading: ReadingOptions

    @Option(parsing: .unconditional, help: .key(.probeInterval)) var interval: Double = 1.0

    @Flag(help: .key(.probeJSON)) var json = false

    func run() async throws {
        let reading = try resolveReading(self.reading.commandLine) { () throws(ConfigurationError) in
            guard interval > 0, interval <= 3600, interval.isFinite else {
                throw ConfigurationError("invalid --interval \(interval): expected seconds > 0 and ≤ 3600")
            }
        }
        let (preference, style) = (reading.backend, reading.nameStyle)
        var logger = Logger(label: "rapl-exporter.probe")
        // The report says everything the log would; keep stderr for real problems.
        logger.logLevel = .error
        let paths = reading.paths
        let selector = BackendSelector(paths: paths, facts: .current(paths: paths), moveCheck: .zero, logger: logger)
        let report = await ProbeReport.run(
            selector: selector,
            preference: preference,
            interval: .nanoseconds(Int64(interval * 1e9))
        )
        print(json ? report.json(style: style).serialized() : report.text(style: style), terminator: json ? "\n" : "")
        if !report.anyAvailable { throw ExitCode(1) }
    }
}
