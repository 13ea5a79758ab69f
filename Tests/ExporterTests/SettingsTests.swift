import Foundation
import Logging
import RAPLBackend
import Support
import Testing

@testable import Exporter

/// The one key table and the typed settings resolved through it, in-process: precedence and every
/// invalid value, with the environment injected.
@Suite struct SettingsTests {
    func resolve(_ flags: [SettingKey: String] = [:], lists: [SettingKey: [String]] = [:], set: Set<SettingKey> = [], env: [String: String] = [:])
        throws(ConfigurationError) -> Settings
    {
        var cli = CommandLineValues()
        cli.values = flags
        cli.lists = lists
        cli.flags = set
        return try Settings.resolve(cli, environment: env)
    }

    func refusal(_ flags: [SettingKey: String] = [:], lists: [SettingKey: [String]] = [:], env: [String: String] = [:]) -> String? {
        do {
            _ = try resolve(flags, lists: lists, env: env)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func defaultsAreTheSeedsAndTheTables() throws {
        let s = try resolve()
        #expect(s.scrapeInterval == .milliseconds(100))
        #expect(s.output == .stdout)
        #expect(s.remoteWrite == nil)
        #expect(s.maximumPower == 5000)
        #expect(s.stuckAfter == .seconds(5))
        #expect(s.reading.backend == .auto)
        #expect(s.reading.paths == HardwarePaths())
        #expect(!s.keepCapabilities)
        let w = try #require(try resolve(env: ["REMOTE_WRITE_URL": "http://h:9/w"]).remoteWrite)
        #expect(w.pushInterval == .seconds(4))
        #expect(w.maxQueuedBatches == 5)
        #expect(w.shutdownTimeout == .seconds(8))
        #expect(w.requestTimeout == .seconds(10))
        #expect(w.series.source == "cpu-pyjoules")
        #expect(w.series.metricName == "pyjoules_remote_write_energy_uj")
        // Every default the table documents is the one resolved (numbers only; the others are prose).
        #expect(SettingKey.scrapeInterval.defaultText == "0.1" && SettingKey.shutdownTimeout.defaultText == "8")
        #expect(SettingKey.maxDomainPower.defaultText == "\(Int(EnergyMeter.defaultMaximumPower))")
    }

    @Test func aFlagBeatsItsVariableAndAVariableBeatsTheDefault() throws {
        #expect(try resolve([.scrapeInterval: "0.5"], env: ["SCRAPE_INTERVAL_S": "nonsense"]).scrapeInterval == .milliseconds(500))
        #expect(try resolve(env: ["SCRAPE_INTERVAL_S": "0.25"]).scrapeInterval == .milliseconds(250))
        // An empty variable is unset.
        #expect(try resolve(env: ["SCRAPE_INTERVAL_S": ""]).scrapeInterval == .milliseconds(100))
        #expect(
            try resolve(set: [.cumulative], env: ["REMOTE_WRITE_URL": "http://h/w", "EXPORT_CUMULATIVE": "false"]).remoteWrite?.series.cumulative
                == true)
        #expect(try resolve(env: ["REMOTE_WRITE_URL": "http://h/w", "EXPORT_CUMULATIVE": "YES"]).remoteWrite?.series.cumulative == true)
        #expect(try resolve(env: ["REMOTE_WRITE_URL": "http://h/w", "EXPORT_CUMULATIVE": "off"]).remoteWrite?.series.cumulative == false)
        // Repeated flags beat the variable's list.
        let labels = try resolve(lists: [.labels: ["node=a"]], env: ["REMOTE_WRITE_URL": "http://h/w", "EXTRA_LABELS": "node=b,rack=c"]).remoteWrite?
            .series.extra
        #expect(labels?.map { "\($0.0)=\($0.1)" } == ["node=a"])
        let fromEnv = try resolve(env: ["REMOTE_WRITE_URL": "http://h/w", "EXTRA_LABELS": "node=b,rack=c"]).remoteWrite?.series.extra
        #expect(fromEnv?.map { "\($0.0)=\($0.1)" } == ["node=b", "rack=c"])
        #expect(try resolve(env: ["LOG_LEVEL": "WARN"]).reading.logLevel == .warning)
        #expect(try resolve([.sysfsRoot: "/host/sys/"]).reading.paths.sysfsRoot == "/host/sys")
    }

    /// Every invalid value: one line naming the flag and the variable.
    @Test(arguments: [
        (
            [SettingKey.scrapeInterval: "0"], [String: String](),
            "invalid scrape-interval '0' (--scrape-interval or SCRAPE_INTERVAL_S): expected a number of seconds > 0"
        ),
        ([:], ["SCRAPE_INTERVAL_S": "fast"], "invalid scrape-interval 'fast' (--scrape-interval or SCRAPE_INTERVAL_S)"),
        ([.scrapeInterval: "0.00001"], [:], "the shortest supported window is 0.0001 s"),
        ([.pushInterval: "0.05"], [:], "shorter than the scrape interval"),
        ([:], ["MAX_RETRY_BATCHES": "0"], "invalid max-retry-batches '0' (--max-retry-batches or MAX_RETRY_BATCHES)"),
        ([:], ["MAX_SAMPLES_PER_REQUEST": "1.5"], "invalid max-samples-per-request '1.5'"),
        ([:], ["MAX_SAMPLE_AGE_S": "-1"], "invalid max-sample-age '-1'"),
        ([:], ["REQUEST_TIMEOUT_S": "inf"], "invalid request-timeout 'inf'"),
        ([:], ["SHUTDOWN_TIMEOUT_S": "nan"], "invalid shutdown-timeout 'nan'"),
        ([:], ["STUCK_AFTER_S": "0"], "invalid stuck-after '0'"),
        ([.duration: "-1"], [:], "invalid duration '-1' (--duration or RUN_DURATION_S): expected a number of seconds > 0"),
        (
            [:], ["MAX_DOMAIN_POWER_W": "lots"],
            "invalid max-domain-power 'lots' (--max-domain-power or MAX_DOMAIN_POWER_W): expected a number of watts > 0"
        ),
        ([:], ["OUTPUT": "file"], "invalid output 'file' (--output or OUTPUT)"),
        ([.output: "remote-write"], [:], "needs REMOTE_WRITE_URL"),
        ([:], ["RAPL_BACKEND": "gpu"], "invalid backend 'gpu' (--backend or RAPL_BACKEND)"),
        ([:], ["COMPONENT_NAMES": "short"], "invalid component names 'short'"),
        ([:], ["LOG_LEVEL": "verbose"], "invalid log level 'verbose' (--log-level or LOG_LEVEL)"),
        ([:], ["METRIC_DEFAULT": "energy-uj"], "invalid metric name 'energy-uj' (--metric-name or METRIC_DEFAULT)"),
        ([:], ["SERVICE_LABEL": "a\u{1}b"], "invalid service label 'a\\x1b'"),
        ([:], ["EXPORT_CUMULATIVE": "banana"], "invalid EXPORT_CUMULATIVE 'banana' (or --cumulative)"),
        ([:], ["KEEP_CAPABILITIES": "maybe"], "invalid KEEP_CAPABILITIES 'maybe' (or --keep-capabilities)"),
        ([:], ["REMOTE_WRITE_URL": "ftp://h/w"], "invalid remote-write URL 'ftp://h/w' (--remote-write-url or REMOTE_WRITE_URL)"),
        ([:], ["REMOTE_WRITE_URL": "http://h/a b"], "invalid remote-write URL"),
        ([:], ["REMOTE_WRITE_URL": "http://u:pw@h/w"], "invalid remote-write URL 'http://u:***@h/w'"),
        ([:], ["REMOTE_WRITE_URL": "http://h/w", "EXTRA_LABELS": "node=a,node=b"], "label 'node' is given twice"),
        ([:], ["REMOTE_WRITE_URL": "http://h/w", "EXTRA_LABELS": "source=x"], "label 'source' is set by rapl-exporter itself"),
        ([:], ["REMOTE_WRITE_URL": "http://h/w", "EXTRA_LABELS": "1node=x"], "invalid label '1node=x'"),
        ([:], ["REMOTE_WRITE_URL": "http://h/w", "EXTRA_LABELS": "node=\u{FFFD}"], "the value must be UTF-8 text without control characters"),
        ([:], ["REMOTE_WRITE_URL": "http://h/w", "REMOTE_WRITE_HEADERS": "X-A: b\rc"], "invalid header 'X-A: b\\xdc'"),
        (
            [:], ["REMOTE_WRITE_URL": "http://h/w", "REMOTE_WRITE_HEADERS": "Content-Type: text/plain"],
            "header 'Content-Type' is set by rapl-exporter itself"
        ),
        ([:], ["REMOTE_WRITE_URL": "http://h/w", "REMOTE_WRITE_USERNAME": "u"], "basic auth needs both"),
        (
            [:],
            [
                "REMOTE_WRITE_URL": "http://h/w", "REMOTE_WRITE_BEARER_TOKEN_FILE": "/t", "REMOTE_WRITE_PASSWORD_FILE": "/p",
                "REMOTE_WRITE_USERNAME": "u",
            ], "not both"
        ),
        ([:], ["REMOTE_WRITE_URL": "http://h/w", "REMOTE_WRITE_TLS_CA_FILE": "/ca"], "TLS options are set but the remote-write URL"),
        ([:], ["REMOTE_WRITE_URL": "https://h/w", "REMOTE_WRITE_TLS_CERT_FILE": "/c"], "mutual TLS needs both"),
        ([:], ["LISTEN_ADDRESS": "9102"], "invalid listen address '9102' (--listen or LISTEN_ADDRESS): expected HOST:PORT"),
        ([.listen: "localhost:70000"], [:], "invalid listen address 'localhost:70000'"),
        ([.listen: "::1:9102"], [:], "invalid listen address '::1:9102'"),
        ([.listen: ":80"], [:], "listen port 80 (--listen or LISTEN_ADDRESS) is below 1024: binding it needs CAP_NET_BIND_SERVICE"),
        ([.output: "none"], [:], "output none needs the /metrics endpoint: set LISTEN_ADDRESS (or --listen)"),
        (
            [:], ["WEB_CONFIG_FILE": "/etc/web.yml"],
            "a web configuration file (--web.config.file or WEB_CONFIG_FILE) configures the /metrics endpoint, which is off"
        ),
        ([:], ["SPOOL_DIR": "/var/lib/rapl"], "a spool (--spool-dir or SPOOL_DIR) keeps what a push output has not delivered, and output is stdout"),
        ([:], ["REMOTE_WRITE_URL": "http://h/w", "SPOOL_DIR": "/s", "SPOOL_MAX_BYTES": "1Ti"], "invalid spool-max-bytes '1Ti'"),
        ([:], ["REMOTE_WRITE_URL": "http://h/w", "SPOOL_DIR": "/s", "SPOOL_MAX_BYTES": "1000"], "expected a size of at least 64Ki"),
        // With stdout output, remote-write options given wrongly are still errors.
        ([.output: "stdout"], ["REMOTE_WRITE_URL": "http://h/w", "REMOTE_WRITE_HEADERS": "bad"], "invalid header 'bad'"),
    ])
    func invalidValuesAreRefusedWithOneLine(_ flags: [SettingKey: String], _ env: [String: String], _ message: String) {
        let refused = refusal(flags, env: env)
        #expect(refused?.contains(message) == true, "\(refused ?? "accepted")")
        #expect(refused?.contains("\n") == false)
    }

    @Test func theSpoolTakesSizesInBytesOrBinaryUnits() throws {
        let base: [String: String] = ["REMOTE_WRITE_URL": "http://h/w", "SPOOL_DIR": "/var/lib/rapl-exporter"]
        #expect(try Settings.resolve(CommandLineValues(), environment: base).spool == SpoolSettings(directory: "/var/lib/rapl-exporter"))
        #expect(try Settings.resolve(CommandLineValues(), environment: ["REMOTE_WRITE_URL": "http://h/w"]).spool == nil)
        for (text, bytes) in [("65536", 65536), ("512Ki", 512 << 10), ("64Mi", 64 << 20), ("2Gi", 2 << 30), ("8M", 8 << 20)] {
            var env = base
            env["SPOOL_MAX_BYTES"] = text
            #expect(try Settings.resolve(CommandLineValues(), environment: env).spool?.maxBytes == bytes)
        }
        var cli = CommandLineValues()
        cli[.spoolDirectory] = "/flag"
        #expect(try Settings.resolve(cli, environment: base).spool?.directory == "/flag")
    }

    @Test func listenAloneServesOnlyTheEndpointAndBesidePushingBoth() throws {
        let alone = try resolve([.listen: ":9102"])
        #expect(alone.listen == ListenAddress(":9102"))
        #expect(alone.listen?.host == "0.0.0.0")
        #expect(alone.output == .none)
        let v6 = try resolve([:], env: ["LISTEN_ADDRESS": "[::1]:9102"])
        #expect(v6.listen?.host == "::1")
        #expect(v6.listen?.description == "[::1]:9102")
        let both = try resolve([.listen: "127.0.0.1:9102"], env: ["REMOTE_WRITE_URL": "http://h/w"])
        #expect(both.output == .remoteWrite)
        #expect(both.listen?.port == 9102)
        #expect(try resolve([.listen: "127.0.0.1:9102", .output: "stdout"]).output == .stdout)
        #expect(try resolve().listen == nil)
        #expect(try resolve([.listen: ":9102"], env: ["WEB_CONFIG_FILE": "/etc/web.yml"]).webConfigFile == "/etc/web.yml")
        #expect(try resolve(env: ["REMOTE_WRITE_URL": "http://h/w"]).remoteWrite?.wireProtocol == .v1, "the seed's 1.0 by default")
        #expect(try resolve([.remoteWriteProtocol: "AUTO"], env: ["REMOTE_WRITE_URL": "http://h/w"]).remoteWrite?.wireProtocol == .auto)
    }

    /// docs/configuration.md documents every key of the table, and nothing that is not in it.
    @Test func theConfigurationDocMatchesTheKeyTable() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let doc = try String(contentsOfFile: root + "/docs/configuration.md", encoding: .utf8)
        let rows = doc.split(separator: "\n").filter { $0.hasPrefix("| `--") }
        func tokens(_ text: Substring, prefix: String) -> Set<String> {
            var found: Set<String> = []
            for part in text.split(separator: "`").enumerated() where part.offset % 2 == 1 {
                let word = part.element.split(separator: " ").first.map(String.init) ?? ""
                if word.hasPrefix(prefix) { found.insert(word) }
            }
            return found
        }
        var documentedFlags: Set<String> = []
        var documentedVariables: Set<String> = []
        for row in rows {
            let cells = row.split(separator: "|", omittingEmptySubsequences: false)
            documentedFlags.formUnion(tokens(cells[1], prefix: "--"))
            for variable in tokens(cells[2], prefix: "") where variable.first?.isUppercase == true {
                documentedVariables.insert(String(variable.prefix { $0 != "=" }))
            }
        }
        let keys = SettingKey.all
        let tableFlags = Set(keys.filter { $0.commands.contains(.run) }.map { "--" + $0.flag })
        #expect(
            documentedFlags == tableFlags,
            "documented only: \(documentedFlags.subtracting(tableFlags)); undocumented: \(tableFlags.subtracting(documentedFlags))")
        let tableVariables = Set(keys.compactMap(\.variable))
        #expect(
            documentedVariables == tableVariables,
            "documented only: \(documentedVariables.subtracting(tableVariables)); undocumented: \(tableVariables.subtracting(documentedVariables))")
        // The probe-only keys are documented in prose.
        for key in keys where !key.commands.contains(.run) { #expect(doc.contains("`--\(key.flag)"), "\(key)") }
        // Every key's default, where it has one, is in its row.
        for key in keys where key.commands.contains(.run) {
            guard let value = key.defaultText, let row = rows.first(where: { $0.contains("`--\(key.flag)") }) else { continue }
            if value.first?.isNumber == true || value.hasPrefix("/") || value.allSatisfy({ $0.isLetter || $0 == "-" || $0 == "_" }) {
                #expect(row.contains("`\(value)`") || row.contains(value), "\(key): default \(value) not in \(row)")
            }
        }
    }
}
