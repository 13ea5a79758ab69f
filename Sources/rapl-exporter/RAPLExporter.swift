import ArgumentParser
import Exporter

/// The root command: `run` (the default), `probe`, `healthcheck`.
struct RAPLExporter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rapl-exporter",
        abstract: "Reads CPU energy counters (Intel/AMD RAPL) and pushes them to Prometheus with remote write.",
        version: ExporterVersion.current,
        subcommands: [RunCommand.self, ProbeCommand.self, CompareCommand.self, TopCommand.self, HealthcheckCommand.self],
        defaultSubcommand: RunCommand.self
    )
}
