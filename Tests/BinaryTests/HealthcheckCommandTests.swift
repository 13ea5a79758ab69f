import TestSupport
import Testing

/// `rapl-exporter healthcheck` against a running daemon, a stopped one and no file at all.
@Suite struct HealthcheckCommandTests {
    @Test func healthcheckCommandAgainstARunningDaemon() async throws {
        let tree = FakeTree.powercap()
        let file = tree.root + "/health"
        let daemon = try Daemon(tree.sysfsArguments + ["--output", "stdout", "--health-file", file, "--duration", "5"])
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
