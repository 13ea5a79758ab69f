import Foundation
import TestSupport
import Testing

/// Least privilege: after start the daemon holds no capabilities and still reads its counters.
@Suite struct PrivilegeTests {
    @Test(.enabled(if: getuid() == 0, "needs root, which starts with every capability"))
    func capabilitiesAreDroppedAfterStartAndCountersStillRead() async throws {
        let tree = FakeTree.powercap([("intel-rapl:0", "package-0", 1000)])
        let daemon = try Daemon(
            tree.sysfsArguments + [
                "--output", "stdout",
                "--scrape-interval", "0.05", "--duration", "60",
            ])
        try await daemon.waitSampling()
        // Capabilities are per thread: every thread must hold none.
        let pid = daemon.process.processIdentifier
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        #expect(tasks.count > 1, "the async runtime and NIO run threads")
        for task in tasks {
            let status = try String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)
            let lines = status.split(separator: "\n")
            for field in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
                let value = lines.first { $0.hasPrefix(field) }?.split(separator: "\t").last.map(String.init)
                #expect(value == "0000000000000000", "thread \(task) \(field) \(value ?? "?")")
            }
        }
        for i in 1...40 {
            tree.setEnergy("intel-rapl:0", 1000 + UInt64(i) * 500)
            try await Task.sleep(for: .milliseconds(20))
        }
        // Stopped once the counters are still (a fixed --duration could end first on a loaded machine);
        // SIGTERM closes a last window with everything read.
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0)
        let windows = daemon.log.split(separator: "\n").filter { $0.hasPrefix("{") }
        let total = try windows.reduce(0) { sum, line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return sum + ((object?["package-0"] as? Int) ?? 0)
        }
        #expect(total == 40 * 500, "counters read after the drop: \(daemon.log)")
        #expect(daemon.log.contains("now dropped all (CapEff 0000000000000000)"))
    }

    @Test(.enabled(if: getuid() == 0, "needs root"))
    func keepCapabilitiesKeepsThem() async throws {
        let tree = FakeTree.powercap([("intel-rapl:0", "package-0", 1000)])
        let daemon = try Daemon(tree.sysfsArguments + ["--output", "stdout", "--duration", "5", "--keep-capabilities"])
        try await daemon.waitSampling()
        let status = try String(contentsOfFile: "/proc/\(daemon.process.processIdentifier)/status", encoding: .utf8)
        let capPrm = status.split(separator: "\n").first { $0.hasPrefix("CapPrm:") }?.split(separator: "\t").last.map(String.init)
        #expect(capPrm != "0000000000000000")
        #expect(try await daemon.waitExit() == 0)
    }
}
