import ArgumentParser
import Exporter
import Logging
import RAPLBackend

#if canImport(Glibc)
    import Glibc
#endif

extension ArgumentHelp {
    /// A setting's help, from the one key table.
    static func key(_ key: SettingKey) -> ArgumentHelp {
        ArgumentHelp(key.helpLine, valueName: key.valueName)
    }
}

/// The process environment, read once (`environ`), for `Settings.resolve`.
enum ProcessEnvironment {
    static var current: [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            // Invalid UTF-8 is repaired to U+FFFD, which the label and header checks refuse.
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return result
    }
}

/// Where the hardware is and how to name it: every command that reads counters (`run`, `probe`,
/// `compare`, `top`).
struct HardwareOptions: ParsableArguments {
    @Option(help: .key(.sysfsRoot)) var sysfsRoot: String?
    @Option(help: .key(.devRoot)) var devRoot: String?
    @Option(help: .key(.procRoot)) var procRoot: String?
    @Option(help: .key(.componentNames)) var componentNames: String?
    @Option(help: .key(.logLevel)) var logLevel: String?

    var commandLine: CommandLineValues {
        var v = CommandLineValues()
        let options: [(SettingKey, String?)] = [
            (.sysfsRoot, sysfsRoot), (.devRoot, devRoot), (.procRoot, procRoot), (.componentNames, componentNames), (.logLevel, logLevel),
        ]
        for (key, value) in options { v[key] = value }
        return v
    }
}

/// The hardware options and the backend: the commands that read one backend (`run`, `probe`, `top`).
struct ReadingOptions: ParsableArguments {
    @Option(help: .key(.backend)) var backend: String?
    @OptionGroup var hardware: HardwareOptions

    var commandLine: CommandLineValues {
        var v = hardware.commandLine
        v[.backend] = backend
        return v
    }
}

/// Sets up logging to stderr at `level`.
func bootstrapLogging(_ level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}

/// The reading settings of `probe`, `compare` and `top`: the command's own option checks (`check`), then
/// the key table's; logging set up at the level asked for, but not below `floor`. Exit status 2 on a bad value.
func resolveReading(
    _ values: CommandLineValues, logAtLeast floor: Logger.Level = .trace, check: () throws(ConfigurationError) -> Void = {}
) throws(ExitCode) -> ReadingSettings {
    try withConfiguration { () throws(ConfigurationError) in
        try check()
        let reading = try Settings.resolveReading(values, environment: ProcessEnvironment.current)
        bootstrapLogging(max(reading.logLevel, floor))
        return reading
    }
}

/// Runs `body`, turning a ConfigurationError into one line on stderr and exit code 2.
func withConfiguration<T>(_ body: () throws(ConfigurationError) -> T) throws(ExitCode) -> T {
    do {
        return try body()
    } catch {
        StandardError.write("rapl-exporter: \(error.description)\n")
        throw ExitCode(2)
    }
}
