import Logging
import Synchronization

/// Captures log lines (`"<level> <message>"`) for assertions.
public final class LogCapture: Sendable {
    public let lines = Mutex<[String]>([])

    public init() {}

    public var logger: Logger {
        Logger(label: "test") { _ in CaptureHandler(capture: self) }
    }

    public func contains(_ text: String) -> Bool { lines.withLock { $0.contains { $0.contains(text) } } }

    /// How many lines contain `text`.
    public func count(_ text: String) -> Int { lines.withLock { $0.filter { $0.contains(text) }.count } }
}

struct CaptureHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        capture.lines.withLock { $0.append("\(event.level) \(event.message)") }
    }
}
