import Foundation
import TestSupport
import Testing

@testable import Exporter

@Suite struct HealthTests {
    func state(window: Int64, pushOK: Int64 = 0, failures: Int = 0, push: Double = 4) -> HealthFile.State {
        var s = HealthFile.State()
        s.pid = 1
        s.startedMillis = 0
        s.lastWindowMillis = window
        s.scrapeInterval = 0.1
        s.pushInterval = push
        s.lastPushOKMillis = pushOK
        s.consecutivePushFailures = failures
        return s
    }

    @Test func judgesWindowsAndPushes() {
        #expect(state(window: 99_000, pushOK: 98_000).problem(nowMillis: 100_000, processAlive: true) == nil)
        #expect(state(window: 99_000).problem(nowMillis: 100_000, processAlive: false)?.contains("not running") == true)
        #expect(state(window: 80_000).problem(nowMillis: 100_000, processAlive: true)?.contains("sampling is stuck") == true)
        // Failing pushes are tolerated for max(300 s, 30 push intervals).
        #expect(state(window: 999_000, pushOK: 800_000, failures: 50).problem(nowMillis: 1_000_000, processAlive: true) == nil)
        #expect(
            state(window: 999_000, pushOK: 600_000, failures: 90).problem(nowMillis: 1_000_000, processAlive: true)?.contains("no successful push")
                == true)
        // stdout mode: no push expected.
        #expect(state(window: 999_000, push: 0).problem(nowMillis: 1_000_000, processAlive: true) == nil)
    }

    @Test func roundTrip() {
        let s = state(window: 5, pushOK: 6, failures: 2)
        #expect(HealthFile.State.parse(s.serialized()) == s)
        #expect(HealthFile.State.parse("garbage") == nil)
    }

    @Test func aLastWindowFromTheFutureIsNotHealthy() {
        let problem = state(window: 200_000).problem(nowMillis: 100_000, processAlive: true)
        #expect(problem?.contains("in the future") == true, "\(problem ?? "healthy")")
        // A clock that stepped back less than the allowance is tolerated.
        #expect(state(window: 105_000).problem(nowMillis: 100_000, processAlive: true) == nil)
    }

    /// The old temporary name (`<health>.<pid>.tmp`, opened O_CREAT|O_TRUNC) let any local user plant a
    /// symlink there and have the root exporter overwrite a file of their choosing; a symlink at the
    /// health path itself must be replaced, not followed, too.
    @Test func plantedSymlinksAreNeitherFollowedNorWrittenThrough() throws {
        let tree = FakeTree()
        tree.write("victim", "precious\n", mode: 0o644)
        let victim = tree.root + "/victim"
        let path = tree.root + "/health"
        #expect(symlink(victim, path + ".\(getpid()).tmp") == 0)
        #expect(symlink(victim, path) == 0)
        #expect(AtomicFile.create(path, Array("pid=1\n".utf8)).map(AtomicFile.close) != nil)
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        var st = stat()
        #expect(lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFREG)
        #expect(st.st_mode & 0o777 == 0o644)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "pid=1\n")
        // No temporary file is left behind.
        let left = try FileManager.default.contentsOfDirectory(atPath: tree.root).filter { $0.hasPrefix("health.") && !$0.hasSuffix(".tmp") }
        #expect(left.isEmpty, "\(left)")
    }

    /// The default health file lives in a directory of the exporter's user: one planted by someone else
    /// (another owner, a symlink, writable by others) is refused.
    @Test(.enabled(if: getuid() == 0, "needs root to make a directory another user's"))
    func theDefaultDirectoryMustBeTheExportersOwn() throws {
        let tree = FakeTree()
        let own = tree.root + "/own"
        #expect(AtomicFile.ownDirectory(own) == nil)
        #expect(AtomicFile.ownDirectory(own) == nil, "an existing one of ours is fine")
        let theirs = tree.root + "/theirs"
        #expect(mkdir(theirs, 0o755) == 0 && chown(theirs, 65534, 65534) == 0)
        #expect(AtomicFile.ownDirectory(theirs)?.contains("belongs to uid 65534") == true)
        let link = tree.root + "/link"
        #expect(symlink(own, link) == 0)
        #expect(AtomicFile.ownDirectory(link)?.contains("not a directory") == true)
        let open = tree.root + "/open"
        #expect(mkdir(open, 0o777) == 0 && chmod(open, 0o777) == 0)
        #expect(AtomicFile.ownDirectory(open)?.contains("writable by others") == true)
        #expect(HealthFile.defaultPath == "/tmp/rapl-exporter-\(geteuid())/health")
    }

    /// The sampling thread records every window and, once a second of window time (or at once after the
    /// wall clock stepped back), rewrites the file in place: the same file, the same length. A file
    /// removed or replaced meanwhile is made anew.
    @Test func theHeartbeatIsRewrittenInPlaceOnceASecond() throws {
        let tree = FakeTree()
        let path = tree.root + "/health"
        let wall = TestWallClock()
        let health = HealthFile(path: path, scrapeInterval: .milliseconds(100), pushInterval: .seconds(4), wallClock: wall)
        func written() throws -> HealthFile.State? { HealthFile.State.parse(try String(contentsOfFile: path, encoding: .utf8)) }
        func identity() -> (ino: UInt, size: Int) {
            var st = stat()
            _ = stat(path, &st)
            return (UInt(st.st_ino), Int(st.st_size))
        }
        let t0 = wall.nowMicroseconds()
        health.windowClosed(atMicroseconds: t0)
        #expect(try written()?.lastWindowMillis == t0 / 1000)
        let first = identity()

        health.windowClosed(atMicroseconds: t0 + 500_000)
        #expect(try written()?.lastWindowMillis == t0 / 1000, "not written again within a second")
        #expect(health.current.lastWindowMillis == (t0 + 500_000) / 1000, "but recorded")

        health.pushed(ok: false)
        health.windowClosed(atMicroseconds: t0 + 1_000_000)
        #expect(try written()?.lastWindowMillis == (t0 + 1_000_000) / 1000)
        #expect(try written()?.consecutivePushFailures == 1)
        #expect(identity().ino == first.ino && identity().size == first.size, "in place, fixed length")

        #expect(unlink(path) == 0)
        health.windowClosed(atMicroseconds: t0 + 2_000_000)
        #expect(try written()?.lastWindowMillis == (t0 + 2_000_000) / 1000, "a removed file is made anew")

        #expect(AtomicFile.create(path, Array("pid=1\n".utf8)).map(AtomicFile.close) != nil)
        health.windowClosed(atMicroseconds: t0 + 3_000_000)
        #expect(try written()?.lastWindowMillis == (t0 + 3_000_000) / 1000, "a replaced file is replaced again")

        health.windowClosed(atMicroseconds: t0 + 1_500_000)
        #expect(try written()?.lastWindowMillis == (t0 + 1_500_000) / 1000, "a step back of the wall clock is written at once")
        #expect(HealthFile.check(path: path, wallClock: wall).healthy)
    }
}
