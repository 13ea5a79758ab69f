import ArgumentParser
import Dispatch
import Exporter
import RAPLBackend

#if canImport(Glibc)
    import Glibc
#endif

/// The entry point. Not ArgumentParser's async `main`: `run` opens the counters and drops its
/// capabilities while the process has a single thread — capabilities are per thread in Linux, so a
/// drop made once the async runtime's threads exist would leave them privileged. Only then is the async
/// runtime started (threads created after the drop inherit the empty sets).
@main
enum Main {
    /// Standard streams the process was started without (now /dev/null).
    nonisolated(unsafe) static var closedStreams: [CInt] = []

    static func main() {
        closedStreams = StandardStreams.reserveClosed()
        let command: any ParsableCommand
        do {
            command = try RAPLExporter.parseAsRoot()
        } catch {
            fail(error)
        }
        if let run = command as? RunCommand {
            let started: RunCommand.PreparedRun
            do {
                started = try run.prepare()
            } catch {
                fail(error)
            }
            runAsync(on: started.executor) { try await RunCommand.serve(started) }
        } else if let asyncCommand = command as? any AsyncParsableCommand {
            nonisolated(unsafe) var command = asyncCommand
            runAsync { try await command.run() }
        } else {
            var command = command
            do { try command.run() } catch { fail(error) }
            RAPLExporter.exit()
        }
    }

    /// Runs `body` in a task that prefers `executor` (the daemon's event loop), then exits.
    static func runAsync(on executor: (any TaskExecutor)? = nil, _ body: @escaping @Sendable () async throws -> Void) -> Never {
        Task(executorPreference: executor) {
            do {
                try await body()
                RAPLExporter.exit()
            } catch {
                fail(error)
            }
        }
        dispatchMain()
    }

    /// Usage errors (unknown flag, missing value) are one line and exit status 2, like invalid values.
    static func fail(_ error: any Error) -> Never {
        if RAPLExporter.exitCode(for: error) == .validationFailure {
            StandardError.write("rapl-exporter: \(RAPLExporter.message(for: error)) (see --help)\n")
            RAPLExporter.exit(withError: ExitCode(2))
        }
        RAPLExporter.exit(withError: error)
    }
}
