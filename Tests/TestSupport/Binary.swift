import Foundation

/// Runs the real `rapl-exporter` binary (built next to the test bundle).
public enum Binary {
    /// `RAPL_EXPORTER_BINARY` when set (to run the tests against the release binary), else the one
    /// built next to the test bundle.
    public static var path: String {
        if let binary = ProcessInfo.processInfo.environment["RAPL_EXPORTER_BINARY"], !binary.isEmpty { return binary }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent + "/rapl-exporter"
    }

    public struct Output {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `arguments` (the binary, or `setpriv … binary` for a dropped-privilege child) and waits for it
    /// on a thread of its own, so that tests running in parallel on the (small) cooperative pool are not
    /// starved by a blocking wait.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try runBlocking(executable, arguments, environment: environment) })
            }
            thread.start()
        }
    }

    public static func runBlocking(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }
}
