import RAPLBackend
import ServiceLifecycle
import Support
import Synchronization

/// The daemon's heartbeat, for `rapl-exporter healthcheck` (the container's HEALTHCHECK): the sampler
/// reports each closed window, the writer each push. Once a second, at the end of a window (or of a batch
/// of windows, at most 5 s apart: `Sampler.batching`), the state is written in place into the file (one
/// `pwrite(2)` of a fixed-length record: the same length every time, so a reader sees whole values;
/// `check` reads twice to rule out a torn read). That one syscall on the sampling thread is far cheaper
/// than a writer of its own: a timer on Swift concurrency's thread pool wakes several threads per write
/// (docs/performance.md). The file is first made atomically (a new file renamed over the path) and made
/// anew whenever the path no longer names it. As a `Service` it writes the final state once more at
/// graceful shutdown.
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

        /// The lines that do not change during a run.
        func constantLines() -> String {
            "pid=\(pid)\nstarted_ms=\(startedMillis)\nscrape_interval_s=\(scrapeInterval)\npush_interval_s=\(pushInterval)\n"
        }

        /// The lines that change, zero-padded to fixed widths (so every rewrite has the same length and
        /// overwrites the last one entirely), formatted straight into bytes: this runs on the sampling
        /// thread at most once a second.
        func appendVaryingLines(to out: inout [UInt8]) {
            func line(_ key: StaticString, _ value: Int64, width: Int) {
                key.withUTF8Buffer { out.append(contentsOf: $0) }
                out.append(UInt8(ascii: "="))
                let start = out.count
                out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width))
                var rest = UInt64(max(0, value))
                var i = out.count - 1
                while rest > 0, i >= start {
                    out[i] = UInt8(ascii: "0") + UInt8(rest % 10)
                    rest /= 10
                    i -= 1
                }
                out.append(UInt8(ascii: "\n"))
            }
            line("last_window_ms", lastWindowMillis, width: 16)
            line("last_push_ok_ms", lastPushOKMillis, width: 16)
            line("last_push_error_ms", lastPushErrorMillis, width: 16)
            line("consecutive_push_failures", Int64(consecutivePushFailures), width: 10)
        }

        func serialized() -> String {
            var varying: [UInt8] = []
            appendVaryingLines(to: &varying)
            return constantLines() + String(decoding: varying, as: UTF8.self)
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

    /// The open file the heartbeat is rewritten into.
    private struct Writer {
        /// -1 until made, or after a failure (then made anew at the next write).
        var fd: CInt = -1
        var length = 0
        /// The window time (ms) of the last write.
        var lastWrittenMillis: Int64 = .min
        var failedOnce = false
        /// How many times the file was written (tests count the rewrites per batch by it).
        var writes = 0
        /// `State.constantLines()`, formatted once, and the record's bytes, reused.
        var constantLines: [UInt8] = []
        var record: [UInt8] = []
    }

    private let state: Mutex<(state: State, writer: Writer)>

    public init(path: String, scrapeInterval: Duration, pushInterval: Duration?, wallClock: any WallClock = SystemWallClock()) {
        self.path = path
        self.wallClock = wallClock
        var s = State()
        s.pid = AtomicFile.processID
        s.startedMillis = wallClock.nowMicroseconds() / 1000
        s.scrapeInterval = scrapeInterval.seconds
        s.pushInterval = pushInterval?.seconds ?? 0
        var writer = Writer()
        writer.constantLines = Array(s.constantLines().utf8)
        writer.record.reserveCapacity(writer.constantLines.count + 128)
        state = Mutex((s, writer))
        flush()
    }

    deinit {
        state.withLock { if $0.writer.fd >= 0 { AtomicFile.close($0.writer.fd) } }
    }

    public var current: State { state.withLock { $0.state } }
    var writes: Int { state.withLock { $0.writer.writes } }

    /// A window closed at `microseconds` (wall clock), on the sampling thread: recorded, and written to
    /// the file when a second has passed since the last write (or the wall clock stepped back).
    public func windowClosed(atMicroseconds microseconds: Int64) {
        state.withLock { s in
            let ms = microseconds / 1000
            s.state.lastWindowMillis = ms
            guard ms - s.writer.lastWrittenMillis >= 1000 || ms < s.writer.lastWrittenMillis else { return }
            write(&s)
        }
    }

    /// Waits for graceful shutdown, then writes the final state.
    public func run() async throws {
        try? await gracefulShutdown()
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

    /// Writes the file now.
    public func flush() {
        state.withLock { write(&$0) }
    }

    /// Rewrites the open file in place while the path still names it; otherwise (first write, the file
    /// removed or replaced, a failed write) makes it anew atomically. The first failure is reported on
    /// stderr.
    private func write(_ s: inout (state: State, writer: Writer)) {
        s.writer.lastWrittenMillis = s.state.lastWindowMillis
        s.writer.writes += 1
        s.writer.record.overwrite(with: s.writer.constantLines)
        s.state.appendVaryingLines(to: &s.writer.record)
        let bytes = s.writer.record
        if s.writer.fd >= 0 {
            if AtomicFile.isLinked(s.writer.fd, at: path), AtomicFile.overwrite(s.writer.fd, bytes, previousLength: s.writer.length) {
                s.writer.length = bytes.count
                return
            }
            AtomicFile.close(s.writer.fd)
            s.writer.fd = -1
        }
        if let fd = AtomicFile.create(path, bytes) {
            s.writer.fd = fd
            s.writer.length = bytes.count
        } else if !s.writer.failedOnce {
            s.writer.failedOnce = true
            StandardError.write("rapl-exporter: cannot write the health file \(path); healthcheck will fail (set --health-file)\n")
        }
    }

    /// For `healthcheck`: reads the file and judges it now.
    public static func check(path: String, wallClock: any WallClock = SystemWallClock()) -> (healthy: Bool, message: String) {
        // The file is rewritten in place: two reads that agree are not torn by a write in between.
        var text = try? TextFile.read(path)
        for _ in 0..<5 {
            let again = try? TextFile.read(path)
            if again == text { break }
            text = again
        }
        guard let text, let state = State.parse(text) else {
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
