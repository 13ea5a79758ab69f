import RAPLBackend
import ServiceLifecycle
import Support
import Synchronization

/// The daemon's heartbeat, for `rapl-exporter healthcheck` (the container's HEALTHCHECK): the sampler
/// reports each closed window (a locked store of its end time, no I/O on the sampling thread), the
/// writer each push; as a `Service`, once a second it writes the state to a small key=value file
/// (atomically, by rename), and once more at shutdown.
public final class HealthFile: Service, Sendable {
    public struct State: Sendable, Equatable {
        public var pid: Int32 = 0
        public var startedMillis: Int64 = 0
        public var lastWindowMillis: Int64 = 0
        public var scrapeInterval: Double = 0
        public var pushInterval: Double = 0
        public var lastPushOKMillis: Int64 = 0
        public var lastPushErrorMillis: Int64 = 0
        public var consecutivePushFailures: Int = 0

        public init() {}

        func serialized() -> String {
            """
            pid=\(pid)
            started_ms=\(startedMillis)
            last_window_ms=\(lastWindowMillis)
            scrape_interval_s=\(scrapeInterval)
            push_interval_s=\(pushInterval)
            last_push_ok_ms=\(lastPushOKMillis)
            last_push_error_ms=\(lastPushErrorMillis)
            consecutive_push_failures=\(consecutivePushFailures)

            """
        }

        public static func parse(_ text: String) -> State? {
            var s = State()
            var seen = 0
            for line in text.split(separator: "\n") {
                let kv = line.split(separator: "=", maxSplits: 1)
                guard kv.count == 2 else { continue }
                let v = String(kv[1])
                seen += 1
                switch kv[0] {
                case "pid": s.pid = Int32(v) ?? 0
                case "started_ms": s.startedMillis = Int64(v) ?? 0
                case "last_window_ms": s.lastWindowMillis = Int64(v) ?? 0
                case "scrape_interval_s": s.scrapeInterval = Double(v) ?? 0
                case "push_interval_s": s.pushInterval = Double(v) ?? 0
                case "last_push_ok_ms": s.lastPushOKMillis = Int64(v) ?? 0
                case "last_push_error_ms": s.lastPushErrorMillis = Int64(v) ?? 0
                case "consecutive_push_failures": s.consecutivePushFailures = Int(v) ?? 0
                default: seen -= 1
                }
            }
            return seen >= 3 ? s : nil
        }

        /// Healthy when windows keep closing and, if pushing, a push succeeded recently enough.
        /// Returns nil when healthy, else the reason.
        public func problem(nowMillis: Int64, processAlive: Bool) -> String? {
            if !processAlive { return "the exporter (pid \(pid)) is not running" }
            let windowAllowance = Int64(max(10, 10 * scrapeInterval) * 1000)
            let lastWindow = max(lastWindowMillis, startedMillis)
            if lastWindow - nowMillis > windowAllowance {
                return
                    "the last window is stamped \(Double(lastWindow - nowMillis) / 1000) s in the future (the clock stepped back, or the file is not the exporter's)"
            }
            if nowMillis - lastWindow > windowAllowance {
                return "no window closed for \(Double(nowMillis - lastWindow) / 1000) s (scrape interval \(scrapeInterval) s): sampling is stuck"
            }
            if pushInterval > 0 {
                let pushAllowance = Int64(max(300, 30 * pushInterval) * 1000)
                let lastOK = max(lastPushOKMillis, startedMillis)
                if consecutivePushFailures > 0, nowMillis - lastOK > pushAllowance {
                    return "no successful push for \(Double(nowMillis - lastOK) / 1000) s (\(consecutivePushFailures) failures in a row)"
                }
            }
            return nil
        }
    }

    /// `/tmp/rapl-exporter-UID/health`: in a directory of this user's (made 0700 at start), so that no
    /// other local user can plant, replace or fake it. `healthcheck` run as the same user finds it.
    public static var defaultPath: String { "/tmp/rapl-exporter-\(AtomicFile.userID)/health" }

    /// Makes the default path's directory (see ``defaultPath``); the reason when it cannot be trusted.
    public static func prepareDefaultDirectory() -> String? {
        let path = defaultPath
        return AtomicFile.ownDirectory(String(path[..<path.lastIndex(of: "/")!]))
    }

    public let path: String
    private let wallClock: any WallClock
    private let state: Mutex<(state: State, failedOnce: Bool)>

    public init(path: String, scrapeInterval: Duration, pushInterval: Duration?, wallClock: any WallClock = SystemWallClock()) {
        self.path = path
        self.wallClock = wallClock
        var s = State()
        s.pid = AtomicFile.processID
        s.startedMillis = wallClock.nowMicroseconds() / 1000
        s.scrapeInterval = scrapeInterval.seconds
        s.pushInterval = pushInterval?.seconds ?? 0
        state = Mutex((s, false))
        flush()
    }

    public var current: State { state.withLock { $0.state } }

    /// A window closed at `microseconds` (wall clock): recorded only; the file is written by `run()`.
    public func windowClosed(atMicroseconds microseconds: Int64) {
        state.withLock { $0.state.lastWindowMillis = microseconds / 1000 }
    }

    /// Writes the file every second until graceful shutdown, then once more.
    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: .seconds(1))
                self.flush()
            }
        }
        flush()
    }

    public func pushed(ok: Bool) {
        let now = wallClock.nowMicroseconds() / 1000
        state.withLock {
            if ok {
                $0.state.lastPushOKMillis = now
                $0.state.consecutivePushFailures = 0
            } else {
                $0.state.lastPushErrorMillis = now
                $0.state.consecutivePushFailures += 1
            }
        }
    }

    /// Writes the file now (atomically); the first failure is reported on stderr.
    public func flush() {
        let text = state.withLock { $0.state.serialized() }
        if !AtomicFile.write(path, text) {
            let first = state.withLock { s -> Bool in
                defer { s.failedOnce = true }
                return !s.failedOnce
            }
            if first { StandardError.write("rapl-exporter: cannot write the health file \(path); healthcheck will fail (set --health-file)\n") }
        }
    }

    /// For `healthcheck`: reads the file and judges it now.
    public static func check(path: String, wallClock: any WallClock = SystemWallClock()) -> (healthy: Bool, message: String) {
        guard let text = try? TextFile.read(path), let state = State.parse(text) else {
            return (false, "unhealthy: no health file at \(path) (is the exporter running, with the same --health-file?)")
        }
        let now = wallClock.nowMicroseconds() / 1000
        if let problem = state.problem(nowMillis: now, processAlive: AtomicFile.processExists(state.pid)) {
            return (false, "unhealthy: \(problem)")
        }
        var message = "healthy: last window \(Double(now - state.lastWindowMillis) / 1000) s ago"
        if state.pushInterval > 0 {
            message += state.lastPushOKMillis > 0 ? ", last push ok \(Double(now - state.lastPushOKMillis) / 1000) s ago" : ", no push yet"
        }
        return (true, message)
    }
}
