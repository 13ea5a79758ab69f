import ArgumentParser
import Exporter
import Logging
import RAPLBackend

#if canImport(Glibc)
import Glibc
#endif

/// Reads an environment variable (flags beat env vars, env vars beat defaults).
func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let s = String(cString: value)
    return s.isEmpty ? nil : s
}

/// `text` without leading and trailing spaces and tabs.
func trimmed(_ text: Substring) -> String {
    var t = text
    while let f = t.first, f == " " || f == "\t" { t.removeFirst() }
    while let l = t.last, l == " " || l == "\t" || l == "\r" { t.removeLast() }
    return String(t)
}

/// A configuration error: one clear line on stderr and exit code 2, before anything starts.
struct ConfigurationError: Error, CustomStringConvertible {
    var description: String
}

/// Options shared by every command that reads counters.
struct ReadingOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Backend: auto, perf, msr or sysfs (env RAPL_BACKEND; default auto).", valueName: "name"))
    var backend: String?

    @Option(help: ArgumentHelp("Where sysfs is mounted (containers: /host/sys).", valueName: "path"))
    var sysfsRoot: String = "/sys"

    @Option(help: ArgumentHelp("Where /dev is (for /dev/cpu/N/msr).", valueName: "path"))
    var devRoot: String = "/dev"

    @Option(help: ArgumentHelp("Where procfs is (cpuinfo, perf_event_paranoid).", valueName: "path"))
    var procRoot: String = "/proc"

    @Option(help: ArgumentHelp("Component names: seed (package-0, core, …) or pyjoules (package_0, core_0, …) (env COMPONENT_NAMES).", valueName: "style"))
    var componentNames: String?

    @Option(help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error, critical (env LOG_LEVEL; default info).", valueName: "level"))
    var logLevel: String?

    var paths: HardwarePaths { HardwarePaths(sysfsRoot: sysfsRoot, devRoot: devRoot, procRoot: procRoot) }

    func resolvedBackend() throws -> BackendPreference {
        let text = backend ?? environment("RAPL_BACKEND") ?? "auto"
        guard let value = BackendPreference(rawValue: text.lowercased()) else {
            throw ConfigurationError(description: "invalid backend '\(text)' (--backend or RAPL_BACKEND): expected auto, perf, msr or sysfs")
        }
        return value
    }

    func resolvedNameStyle() throws -> NameStyle {
        let text = componentNames ?? environment("COMPONENT_NAMES") ?? "seed"
        guard let value = NameStyle(rawValue: text.lowercased()) else {
            throw ConfigurationError(description: "invalid component names '\(text)' (--component-names or COMPONENT_NAMES): expected seed or pyjoules")
        }
        return value
    }

    func resolvedLogLevel() throws -> Logger.Level {
        let text = logLevel ?? environment("LOG_LEVEL") ?? "info"
        // The seed's Python logging names WARN/FATAL and upper case; accept those too.
        let normalized = switch text.lowercased() {
        case "warn": "warning"
        case "fatal": "critical"
        default: text.lowercased()
        }
        guard let level = Logger.Level(rawValue: normalized) else {
            throw ConfigurationError(description: "invalid log level '\(text)' (--log-level or LOG_LEVEL): expected trace, debug, info, notice, warning, error or critical")
        }
        return level
    }

    /// Sets up logging to stderr at the configured level.
    func bootstrapLogging() throws {
        let level = try resolvedLogLevel()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Runs `body`, turning a ConfigurationError into one line on stderr and exit code 2.
func withConfiguration<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ConfigurationError {
        StandardError.write("rapl-exporter: \(error.description)\n")
        throw ExitCode(2)
    }
}
