import ArgumentParser
import Exporter

/// The container's HEALTHCHECK: is *this exporter* sampling and delivering (not: is Prometheus up).
struct HealthcheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "healthcheck",
        abstract: "Exit 0 if the running exporter closes windows and (when pushing) delivers them; 1 otherwise.",
        discussion: """
            Reads the heartbeat file the daemon rewrites every second (when it only pushes, with each batch of
            windows: at most 5 s apart). Unhealthy when the daemon is gone, when no window closed for max(10 s,
            10 scrape intervals), or when pushes keep failing with none accepted for max(300 s, 30 push
            intervals).
            """
    )

    @Option(help: .key(.healthFile)) var healthFile: String?

    func run() throws {
        let (healthy, message) = HealthFile.check(
            path: healthFile ?? ProcessEnvironment.current["HEALTH_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? HealthFile.defaultPath)
        print(message)
        if !healthy { throw ExitCode(1) }
    }
}
