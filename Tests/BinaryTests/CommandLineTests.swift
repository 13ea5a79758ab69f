import Exporter
import Foundation
import TestSupport
import Testing

/// The `run` command's configuration, through the real binary.
@Suite struct CommandLineTests {
    func tree() -> FakeTree { .powercap([("intel-rapl:0", "package-0", 1), ("intel-rapl:0:0", "core", 1)]) }

    @Test(arguments: [
        (["--scrape-interval", "0"], [String: String](), "invalid scrape-interval '0'"),
        (["--scrape-interval=-1"], [:], "invalid scrape-interval '-1'"),
        (["--scrape-interval"], [:], "Missing value for '--scrape-interval"),
        (["--no-such-flag"], [:], "Unknown option '--no-such-flag'"),
        ([], ["SCRAPE_INTERVAL_S": "fast"], "invalid scrape-interval 'fast' (--scrape-interval or SCRAPE_INTERVAL_S)"),
        (["--push-interval", "0.05"], [:], "shorter than the scrape interval"),
        ([], ["PUSH_INTERVAL_S": "1", "SCRAPE_INTERVAL_S": "2"], "shorter than the scrape interval"),
        ([], ["LOG_LEVEL": "verbose"], "invalid log level 'verbose'"),
        ([], ["REMOTE_WRITE_URL": "ftp://prometheus/write"], "invalid remote-write URL 'ftp://prometheus/write'"),
        ([], ["REMOTE_WRITE_URL": "prometheus:9090"], "invalid remote-write URL"),
        ([], ["MAX_RETRY_BATCHES": "0"], "invalid max-retry-batches '0'"),
        (["--output", "file"], [:], "invalid output 'file'"),
        (["--output", "remote-write"], [:], "needs REMOTE_WRITE_URL"),
        ([], ["RAPL_BACKEND": "gpu"], "invalid backend 'gpu'"),
        ([], ["METRIC_DEFAULT": "energy-uj"], "invalid metric name 'energy-uj'"),
        (["--remote-write-url", "http://h/w", "--label", "socket=3"], [:], "label 'socket' is set by rapl-exporter itself"),
        (["--remote-write-url", "http://h/w", "--label", "no-equals"], [:], "invalid label 'no-equals'"),
    ])
    func invalidValuesExitTwoWithOneLine(_ args: [String], _ env: [String: String], _ message: String) async throws {
        let result = try await Binary.run(Binary.path, args, environment: env)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(result.stdout.isEmpty)
    }

    /// The help is generated from the key table: every setting's flag, variable and default are there.
    @Test func helpListsEveryKeyOfTheTable() async throws {
        for (command, keys) in [
            ("run", SettingKey.all.filter { $0.commands.contains(.run) }), ("probe", SettingKey.all.filter { $0.commands.contains(.probe) }),
            ("compare", SettingKey.all.filter { $0.commands.contains(.compare) }), ("top", SettingKey.all.filter { $0.commands.contains(.top) }),
        ] {
            let result = try await Binary.run(Binary.path, [command, "--help"], environment: ["COLUMNS": "400"])
            #expect(result.status == 0)
            let help = result.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            for key in keys {
                #expect(help.contains("--\(key.flag)"), "\(command): \(key)")
                if let variable = key.variable { #expect(help.contains(variable), "\(command): \(key) \(variable)") }
                if let value = key.defaultText { #expect(help.contains("default \(value)"), "\(command): \(key) default") }
            }
        }
    }

    @Test func aFlagBeatsItsVariable() async throws {
        let tree = tree()
        let result = try await Binary.run(
            Binary.path,
            tree.sysfsArguments + ["--scrape-interval", "0.1", "--duration", "0.35"],
            environment: ["SCRAPE_INTERVAL_S": "nonsense", "LOG_LEVEL": "error"]
        )
        #expect(result.status == 0, "\(result.stderr)")
        // The flag's 0.1 s windows, not the variable's nonsense: every window but the final one lasts 0.1 s.
        let durations = try result.stdout.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])["duration"] as? Double ?? 0
        }
        #expect(durations.count >= 2)
        #expect(durations.dropLast().allSatisfy { abs($0 - 0.1) < 0.05 }, "\(durations)")
    }

    @Test func stdoutPrintsTheSeedDictPerWindow() async throws {
        let tree = tree()
        let result = try await Binary.run(
            Binary.path,
            tree.sysfsArguments + ["--duration", "1"],
            environment: ["SCRAPE_INTERVAL_S": "0.1", "LOG_LEVEL": "warning", "REMOTE_WRITE_URL": ""]
        )
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count >= 2)
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(Set(object.keys) == ["timestamp", "duration", "package-0", "core"])
            #expect((object["timestamp"] as? String)?.hasSuffix("+00:00") == true)
        }
        #expect(result.stderr.isEmpty || !result.stderr.contains("error"))
    }

    @Test func noBackendExitsOneWithTheReasons() async throws {
        let empty = FakeTree()
        empty.remove("sys/class/powercap")
        let result = try await Binary.run(
            Binary.path, ["--sysfs-root", empty.sys, "--dev-root", empty.dev, "--proc-root", empty.proc, "--duration", "1"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("backend sysfs: rejected"))
        #expect(result.stderr.contains("rapl-exporter probe"))
    }
}
