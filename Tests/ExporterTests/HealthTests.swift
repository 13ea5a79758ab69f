import Foundation
import Testing
import TestSupport
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
        #expect(state(window: 999_000, pushOK: 600_000, failures: 90).problem(nowMillis: 1_000_000, processAlive: true)?.contains("no successful push") == true)
        // stdout mode: no push expected.
        #expect(state(window: 999_000, push: 0).problem(nowMillis: 1_000_000, processAlive: true) == nil)
    }

    @Test func roundTrip() {
        let s = state(window: 5, pushOK: 6, failures: 2)
        #expect(HealthFile.State.parse(s.serialized()) == s)
        #expect(HealthFile.State.parse("garbage") == nil)
    }

    @Test func healthcheckCommandAgainstARunningDaemon() async throws {
        let tree = FakeTree()
        tree.zone("intel-rapl:0", name: "package-0", energy: 1)
        let file = tree.root + "/health"
        let daemon = try Daemon(["--sysfs-root", tree.sys, "--backend", "sysfs", "--output", "stdout", "--health-file", file, "--duration", "5"])
        try await daemon.waitSampling()
        let healthy = try await Binary.run(Binary.path, ["healthcheck", "--health-file", file])
        #expect(healthy.status == 0, "\(healthy.stdout)")
        #expect(healthy.stdout.hasPrefix("healthy: last window"))
        #expect(try await daemon.waitExit() == 0)
        let gone = try await Binary.run(Binary.path, ["healthcheck"], environment: ["HEALTH_FILE": file])
        #expect(gone.status == 1)
        #expect(gone.stdout.contains("is not running"))
        let missing = try await Binary.run(Binary.path, ["healthcheck", "--health-file", tree.root + "/nothing"])
        #expect(missing.status == 1)
        #expect(missing.stdout.contains("no health file"))
    }
}
