import Foundation
import RAPLBackend
import TestSupport
import Testing

@testable import Exporter

extension ReceiverIntegrationTests {
    /// The issue's fault: `kill -9` at random moments, 50 times, while pushing into a real Prometheus (2.42)
    /// with a spool, and the fake package counter drawing a steady 0.6 W through wraps. Afterwards
    /// Prometheus holds every window once (timestamps strictly increasing), the windows add up to exactly
    /// the energy the fake hardware counted, and the cumulative counter ends at that total: windows
    /// spooled but not delivered were sent by the next run, the energy used while each run was down came in
    /// its gap window, and no window was sent twice with another value.
    @Test func killNineFiftyTimesLosesNothing() async throws {
        let receiver = try ReceiverProcess(.prometheus)
        try await receiver.waitReady()
        let tree = tree()
        tree.write("proc/sys/kernel/random/boot_id", "7d2c3a4e-kill-test\n")
        let spool = TempDirectory()
        let source = "kill-\(UUID().uuidString.prefix(8))"
        let arguments = [
            "--sysfs-root", tree.sys, "--dev-root", tree.dev, "--proc-root", tree.proc, "--backend", "sysfs",
            "--remote-write-url", receiver.writeURL, "--service-label", source, "--scrape-interval", "0.05", "--push-interval", "0.25",
            "--spool-dir", spool.spool, "--cumulative",
            // The 10 J fake counter wraps in 3.3 s at 3 W: a downtime under that is accounted. Well above the
            // 0.6 W drawn, so that a read delayed on a loaded machine is never taken for an impossible step.
            "--max-domain-power", "3",
        ]
        var daemon = try Daemon(arguments)
        try await daemon.waitSampling()
        // The first run makes windows durable before any kill: what came before its first read is not measured.
        try await Task.sleep(for: .milliseconds(600))
        let drawing = Task { try await drawSteadyPower([(tree, 600_000)], until: { Task.isCancelled }) }
        var restarts: [String] = []
        var delays: [Int] = []
        var allLogs = ""
        for _ in 0..<50 {
            let delay = Int.random(in: 50...700)
            delays.append(delay)
            try await Task.sleep(for: .milliseconds(delay))
            kill(daemon.process.processIdentifier, SIGKILL)
            _ = try await daemon.waitExit(seconds: 10)
            restarts += daemon.log.split(separator: "\n").filter { $0.contains("restart:") }.map(String.init)
            allLogs += "=== run killed after \(delay) ms\n" + daemon.log
            daemon = try Daemon(arguments)
        }
        try await daemon.waitSampling()
        try await Task.sleep(for: .milliseconds(500))
        drawing.cancel()
        let added = try await drawing.value[0]
        try await Task.sleep(for: .milliseconds(200))
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        restarts += daemon.log.split(separator: "\n").filter { $0.contains("restart:") }.map(String.init)

        let pkg = try await receiver.samples("pyjoules_remote_write_energy_uj{source=\"\(source)\",component=\"package-0\"}")
        let total = try await receiver.samples("rapl_energy_joules_total{source=\"\(source)\",component=\"package-0\"}")
        let context =
            "delays \(delays) ms; restarts:\n\(restarts.joined(separator: "\n"))\nlogs of the killed runs:\n\(allLogs)\nlast log:\n\(daemon.log)"
        #expect(added > 10_000_000, "the counter wrapped at least once")
        #expect(pkg.reduce(0) { $0 + $1.1 } == Double(added), "the windows add up to the fake counter's change exactly; \(context)")
        #expect(zip(pkg, pkg.dropFirst()).allSatisfy { $0.0 < $1.0 }, "one sample per timestamp, in order")
        #expect(abs((total.last?.1 ?? 0) - Double(added) / 1e6) < 1e-9, "the cumulative counter ends at the total; \(context)")
        #expect(zip(total, total.dropFirst()).allSatisfy { $0.1 <= $1.1 }, "the cumulative counter never goes back")
        #expect(!restarts.contains { $0.contains("not accounted") }, "\(context)")
        #expect(
            !(allLogs + daemon.log).contains("jumped forward") && !(allLogs + daemon.log).contains("stepped back"),
            "no step was taken for a glitch; \(context)")
        // Runs killed before they sample (a kill in the first ~150 ms) log no restart.
        #expect(restarts.count >= 25, "most starts found an earlier run's windows; \(context)")
        await receiver.stop()
    }

    /// A spool on a 12 KiB tmpfs: it fills within seconds. The daemon keeps sampling and delivering from
    /// memory, says so once per episode, shows it (`rapl_exporter_spool_writable` 0), frees what was
    /// delivered and spools again; every window reaches Prometheus with the exact energy.
    @Test(.enabled(if: getuid() == 0, "mounts a tmpfs"))
    func aFullSpoolDiskCostsNothingAndSpoolingResumes() async throws {
        let receiver = try ReceiverProcess(.prometheus)
        try await receiver.waitReady()
        let tree = tree()
        let dir = TempDirectory()
        let mountPoint = dir.path + "/fs"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = try await Binary.run("/bin/mount", ["-t", "tmpfs", "-o", "size=12k", "tmpfs", mountPoint])
        try #require(mount.status == 0, "cannot mount a tmpfs here: \(mount.stderr)")
        defer { _ = try? Binary.runBlocking("/bin/umount", ["-l", mountPoint], environment: [:]) }
        let source = "full-\(UUID().uuidString.prefix(8))"
        let daemon = try Daemon([
            "--sysfs-root", tree.sys, "--dev-root", tree.dev, "--proc-root", tree.proc, "--backend", "sysfs",
            "--remote-write-url", receiver.writeURL, "--service-label", source, "--scrape-interval", "0.01", "--push-interval", "0.5",
            "--spool-dir", mountPoint + "/spool",
        ])
        try await daemon.waitSampling()
        let added = try await advance(tree, steps: 300, pace: .milliseconds(20))
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        let log = daemon.log
        let episodes = log.components(separatedBy: "cannot write (No space left on device)").count - 1
        #expect(episodes >= 1, "\(log)")
        #expect(log.components(separatedBy: "writing again").count - 1 >= episodes - 1, "\(log)")
        #expect(log.components(separatedBy: "cannot write").count - 1 == episodes, "once per episode")
        let windows = try #require(daemon.windowCount)
        let pkg = try await receiver.samples("pyjoules_remote_write_energy_uj{source=\"\(source)\",component=\"package-0\"}")
        #expect(pkg.count == windows)
        #expect(pkg.reduce(0) { $0 + $1.1 } == Double(added))
        let writable = try await receiver.samples("rapl_exporter_spool_writable{source=\"\(source)\"}")
        #expect(writable.contains { $0.1 == 0 }, "the episode shows in the self-metric")
        await receiver.stop()
    }

    /// Draws a steady power on each tree's package-0 (µW) until `stop` says so; returns the µJ added.
    func drawSteadyPower(_ trees: [(FakeTree, UInt64)], until stop: @Sendable () -> Bool) async throws -> [UInt64] {
        let clock = ContinuousClock()
        let start = clock.now
        var added = trees.map { _ in UInt64(0) }
        while !stop() {
            let elapsed = clock.now - start
            let microseconds = UInt64(elapsed.components.seconds) * 1_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000)
            for (i, (tree, microwatts)) in trees.enumerated() {
                added[i] = microseconds * microwatts / 1_000_000
                tree.setEnergy("intel-rapl:0", (9_500_000 + added[i]) % (Self.max + 1))
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return added
    }
}

/// The spool directory at start: one the unprivileged process cannot use, or one another daemon holds,
/// is refused with exit 2 and the reason.
@Suite struct SpoolStartTests {
    let url = "http://127.0.0.1:9/api/v1/write"

    /// Root's CAP_DAC_OVERRIDE would let the start write a directory of another user's; the daemon drops
    /// it before opening the spool, so the check is made as the process that writes it all along.
    @Test(.enabled(if: getuid() == 0, "needs root to hand a directory to another user"))
    func aSpoolDirectoryTheDaemonCannotWriteIsRefusedAtStart() async throws {
        let tree = FakeTree.powercap()
        let dir = TempDirectory()
        try FileManager.default.createDirectory(atPath: dir.spool, withIntermediateDirectories: true)
        #expect(chown(dir.spool, 65534, 65534) == 0)
        #expect(chmod(dir.spool, 0o700) == 0)
        let result = try await Binary.run(Binary.path, tree.sysfsArguments + ["--remote-write-url", url, "--spool-dir", dir.spool])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(
            result.stderr.split(separator: "\n").last?.contains("spool directory \(dir.spool) (--spool-dir, SPOOL_DIR): cannot") == true,
            "\(result.stderr)")
        #expect(result.stderr.contains("Permission denied"))
        // A path under a regular file cannot be a directory at all.
        let under = try await Binary.run(Binary.path, tree.sysfsArguments + ["--remote-write-url", url, "--spool-dir", "/etc/hostname/spool"])
        #expect(under.status == 2)
        #expect(under.stderr.contains("cannot create it"), "\(under.stderr)")
    }

    @Test func aSecondDaemonOnTheSameSpoolIsRefused() async throws {
        let tree = FakeTree.powercap()
        let dir = TempDirectory()
        let args = tree.sysfsArguments + ["--remote-write-url", url, "--spool-dir", dir.spool, "--shutdown-timeout", "0.5"]
        let first = try Daemon(args)
        try await first.waitSampling()
        let second = try await Binary.run(Binary.path, args)
        #expect(second.status == 2, "\(second.stderr)")
        #expect(
            second.stderr.contains(
                "is in use by another rapl-exporter (pid \(first.process.processIdentifier)); give each process its own directory"),
            "\(second.stderr)")
        first.process.terminate()
        #expect(try await first.waitExit() == 0, "\(first.log)")
        // Once the first is gone the directory is free again.
        let third = try Daemon(args)
        try await third.waitSampling()
        third.process.terminate()
        #expect(try await third.waitExit() == 0, "\(third.log)")
    }
}
