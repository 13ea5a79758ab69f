import ArgumentParser

struct HealthcheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "healthcheck", abstract: "placeholder")
}
