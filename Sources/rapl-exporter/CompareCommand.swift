import ArgumentParser
import Exporter
import Logging
import RAPLBackend

struct CompareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Read every backend that works here side by side and show where they disagree.",
        discussion: """
            Per domain and socket: each backend's watts over the run and their relative disagreement ((most − least) / mean); \
            anything above 0.5 % is flagged with its known causes. Exit status 0 when every domain agrees within --tolerance, \
            1 when one disagrees by more (or no backend works here), 2 for a bad option.
            """
    )

    @OptionGroup var hardware: HardwareOptions

    @Option(parsing: .unconditional, help: .key(.compareDuration)) var duration: Double = 10

    @Option(parsing: .unconditional, help: .key(.compareTolerance)) var tolerance: Double = 1

    @Flag(help: .key(.probeJSON)) var json = false

    func run() async throws {
        let reading = try resolveReading(hardware.commandLine) { () throws(ConfigurationError) in
            guard duration > 0, duration <= 3600, duration.isFinite else {
                throw ConfigurationError("invalid --duration \(duration): expected seconds > 0 and ≤ 3600")
            }
            guard tolerance >= 0, tolerance.isFinite else {
                throw ConfigurationError("invalid --tolerance \(tolerance): expected a percentage ≥ 0")
            }
        }
        var logger = Logger(label: "rapl-exporter.compare")
        logger.logLevel = .error
        let selector = BackendSelector(paths: reading.paths, facts: .current(paths: reading.paths), moveCheck: .zero, logger: logger)
        let report = await BackendComparison.run(selector: selector, duration: .nanoseconds(Int64(duration * 1e9)))
        let exceeded = (report.worst ?? 0) * 100 > tolerance
        if json {
            print(report.json(style: reading.nameStyle, tolerance: tolerance, exceeded: exceeded).serialized())
        } else {
            print(report.text(style: reading.nameStyle, tolerance: tolerance, exceeded: exceeded), terminator: "")
        }
        if report.compared.isEmpty || exceeded { throw ExitCode(1) }
    }
}
