import Foundation
import TestSupport
import Testing

@testable import RAPLBackend

@Suite struct ProbeCommandTests {
    func tree() throws -> FakeTree {
        let tree = try #require(FakeTree.allBackends())
        tree.zone("intel-rapl:1", name: "psys", energy: 0)
        return tree
    }

    func roots(_ tree: FakeTree) -> [String] {
        ["--sysfs-root", tree.sys, "--dev-root", tree.dev, "--proc-root", tree.proc]
    }

    func backends(_ json: String) throws -> [String: [String: Any]] {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let list = try #require(object["backends"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: list.map { ($0["backend"] as! String, $0) })
    }

    @Test func asRootEveryBackendWorksAndStaticCountersAreFlaggedStuck() async throws {
        let tree = try tree()
        let result = try await Binary.run(Binary.path, ["probe", "--json", "--interval", "0.05"] + roots(tree))
        #expect(result.status == 0, "\(result.stderr)")
        let report = try backends(result.stdout)
        #expect(report["perf"]?["available"] as? Bool == true)
        #expect(report["msr"]?["available"] as? Bool == true)
        let sysfsDomains = try #require(report["sysfs"]?["domains"] as? [[String: Any]])
        #expect(sysfsDomains.map { $0["component"] as? String } == ["package-0", "psys"])
        // The fake counters do not move during the probe: reported as stuck, never as plain 0 W.
        #expect(sysfsDomains.allSatisfy { $0["status"] as? String == "stuck" })
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(object?["auto_choice"] as? String == "perf")
    }

    @Test func textReportAndPyJoulesNames() async throws {
        let tree = try tree()
        let result = try await Binary.run(
            Binary.path, ["probe", "--backend", "sysfs", "--component-names", "pyjoules", "--interval", "0.05"] + roots(tree))
        #expect(result.status == 0)
        #expect(result.stdout.contains("backend sysfs: available"))
        #expect(result.stdout.contains("package_0 (socket 0): STUCK"))
        #expect(!result.stdout.contains("backend perf"))
    }

    @Test func badOptionsExitTwoWithOneLine() async throws {
        let bad = try await Binary.run(Binary.path, ["probe", "--backend", "gpu"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("invalid backend 'gpu'"))
        let env = try await Binary.run(Binary.path, ["probe"], environment: ["LOG_LEVEL": "loud"])
        #expect(env.status == 2)
        #expect(env.stderr.contains("invalid log level 'loud'"))
    }

    /// Root ignores file modes, so permissions are tested in a child that drops to `nobody` with no
    /// capabilities (setpriv): every backend must be refused with the reason and the fix.
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root and setpriv"))
    func droppedPrivilegesGiveReasonsAndFixes() async throws {
        let tree = try tree()
        let result = try await Binary.run(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--",
                Binary.path, "probe", "--json", "--interval", "0.05",
            ] + roots(tree)
        )
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        let report = try backends(result.stdout)
        #expect((report["perf"]?["reason"] as? String)?.contains("neither CAP_PERFMON nor CAP_SYS_ADMIN") == true)
        #expect((report["msr"]?["reason"] as? String)?.contains("lacks CAP_SYS_RAWIO") == true)
        let sysfsReason = try #require(report["sysfs"]?["reason"] as? String)
        #expect(sysfsReason.contains("intel-rapl:0/energy_uj"))
        #expect(sysfsReason.contains("Permission denied"))
        #expect((report["sysfs"]?["fix"] as? String)?.contains("root only since Linux 5.10") == true)
    }
}

/// `--backend simulated` through the binary: warned about, and marked in what it prints.
@Suite struct SimulatedBackendCommandTests {
    @Test func theDaemonWarnsAndEveryLineSaysSimulated() async throws {
        let result = try await Binary.run(Binary.path, ["--backend", "simulated", "--duration", "0.35"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("NOT A MEASUREMENT"), "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(!lines.isEmpty && lines.allSatisfy { $0.hasSuffix("\"simulated\":true}") && $0.contains("\"package-0\":") }, "\(result.stdout)")
    }

    @Test func probeWarnsAndAutoNeverChoosesIt() async throws {
        let result = try await Binary.run(Binary.path, ["probe", "--backend", "simulated", "--interval", "0.1"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("WARNING: backend simulated: NOT A MEASUREMENT"), "\(result.stdout)")
        #expect(result.stdout.contains("auto never chooses simulated"), "\(result.stdout)")
        let empty = FakeTree()
        let none = try await Binary.run(Binary.path, ["probe", "--interval", "0.05", "--sysfs-root", empty.sys, "--dev-root", empty.dev])
        #expect(none.status == 1)
        #expect(none.stdout.contains("to try the pipeline anyway: --backend simulated"), "\(none.stdout)")
    }
}
