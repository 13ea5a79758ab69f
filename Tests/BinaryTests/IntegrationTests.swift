import Foundation
import HummingbirdBcrypt
import RAPLBackend
import TestSupport
import Testing

@testable import Exporter

/// Drives the real daemon over a fake sysfs tree whose counters advance (and wrap), against real
/// receivers, and reads the data back.
@Suite(.serialized, .enabled(if: Receivers.available, "receivers missing: run scripts/install-receivers (scripts/test does)"))
struct ReceiverIntegrationTests {
    static let step: UInt64 = 12_345
    static let max: UInt64 = 10_000_000

    func tree() -> FakeTree { .powercap([("intel-rapl:0", "package-0", 9_500_000), ("intel-rapl:0:0", "dram", 0)], max: Self.max) }

    /// Advances the counters `steps` times, `pace` apart; `during` runs after each step (outages).
    /// Returns the µJ added to package-0 (it wraps at max_energy_range_uj).
    func advance(_ tree: FakeTree, steps: Int, pace: Duration, during: (Int) async throws -> Void = { _ in }) async throws -> UInt64 {
        for i in 1...steps {
            tree.setEnergy("intel-rapl:0", (9_500_000 + UInt64(i) * Self.step) % (Self.max + 1))
            tree.setEnergy("intel-rapl:0:0", UInt64(i) * 1000)
            try await during(i)
            try await Task.sleep(for: pace)
        }
        return UInt64(steps) * Self.step
    }

    /// Draws a steady power on each tree's package-0 (µW) for `seconds`: each tick sets the counter to
    /// what that power since the start comes to, so the fake hardware's power is exact whatever the
    /// ticks' jitter (at 2 W the 10 J counter wraps every 5 s). Returns the µJ added to each.
    func drawSteadyPower(_ trees: [(FakeTree, UInt64)], seconds: Int) async throws -> [UInt64] {
        let clock = ContinuousClock()
        let start = clock.now
        var added = trees.map { _ in UInt64(0) }
        while clock.now - start < .seconds(seconds) {
            let elapsed = clock.now - start
            let microseconds = UInt64(elapsed.components.seconds) * 1_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000)
            for (i, (tree, microwatts)) in trees.enumerated() {
                added[i] = microseconds * microwatts / 1_000_000
                tree.setEnergy("intel-rapl:0", (9_500_000 + added[i]) % (Self.max + 1))
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return added
    }

    /// One push run: the daemon over a fresh tree (`arguments` given the `source` label), the package
    /// counter advanced 100 times (through a wrap), then SIGTERM once the counters are still (a fixed
    /// `--duration` could end first on a loaded machine). Returns the daemon, its source and the µJ added.
    func pushRun(_ arguments: (_ tree: FakeTree, _ source: String) throws -> Daemon, prefix: String) async throws -> (Daemon, String, UInt64) {
        let tree = tree()
        let source = "\(prefix)-\(UUID().uuidString.prefix(8))"
        let daemon = try arguments(tree, source)
        try await daemon.waitSampling()
        let added = try await advance(tree, steps: 100, pace: .milliseconds(15))
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        return (daemon, source, added)
    }

    func daemon(_ tree: FakeTree, _ url: String, source: String, duration: Double, extra: [String] = []) throws -> Daemon {
        try Daemon(
            [
                "--sysfs-root", tree.sys, "--dev-root", tree.dev, "--proc-root", tree.proc,
                "--backend", "sysfs", "--remote-write-url", url, "--service-label", source,
                "--scrape-interval", "0.05", "--push-interval", "0.5", "--duration", String(duration),
            ] + extra)
    }

    @Test(arguments: [ReceiverProcess.Kind.prometheus, .victoriaMetrics])
    func everyWindowArrivesWithTheExactEnergy(_ kind: ReceiverProcess.Kind) async throws {
        let receiver = try ReceiverProcess(kind)
        try await receiver.waitReady()
        let (daemon, source, added) = try await pushRun({ try self.daemon($0, receiver.writeURL, source: $1, duration: 60) }, prefix: "it")
        let windows = try #require(daemon.windowCount, "\(daemon.log)")
        let selector = "pyjoules_remote_write_energy_uj{source=\"\(source)\",component=\"package-0\",socket=\"0\"}"
        // victoria-metrics makes fresh samples searchable a little after accepting them.
        try? await waitUntil("all samples to be searchable", seconds: 15) { ((try? await receiver.samples(selector))?.count ?? 0) >= windows }
        let pkg = try await receiver.samples(selector)
        let dram = try await receiver.samples("pyjoules_remote_write_energy_uj{source=\"\(source)\",component=\"dram\"}")
        #expect(pkg.count == windows, "every window arrived")
        #expect(dram.count == windows)
        #expect(pkg.reduce(0) { $0 + $1.1 } == Double(added), "the exact µJ, across a wrap")
        #expect(dram.reduce(0) { $0 + $1.1 } == 100_000)
        #expect(zip(pkg, pkg.dropFirst()).allSatisfy { $0.0 < $1.0 }, "strictly increasing timestamps")
        let sent = try await receiver.samples("rapl_exporter_samples_sent_total{source=\"\(source)\"}")
        #expect((sent.last?.1 ?? 0) > 0)
        await receiver.stop()
    }

    /// A real Prometheus — 2.42 over plain HTTP, 3.5 over https with basic auth from a web configuration
    /// file — scrapes the daemon's /metrics while the fake package counter draws a steady 2 W through two
    /// wraps: `rate()` is the fake tree's watts within 2 %, the counter never goes backwards, the last
    /// scraped total is exactly the energy added, and every scrape is `up`.
    @Test(arguments: [(ReceiverProcess.Kind.prometheus, false), (.prometheus3, true)])
    func prometheusScrapesTheExactEnergy(_ kind: ReceiverProcess.Kind, secured: Bool) async throws {
        let port = freePort()
        let tree = tree()
        var target = ReceiverProcess.ScrapeTarget(address: "127.0.0.1:\(port)")
        var extra: [String] = []
        let pki = try await SelfSigned()
        if secured {
            let web = try pki.file(
                "web.yml",
                "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prometheus: \(Bcrypt.hash("scrape-secret", cost: 4))\n"
            )
            extra = ["--web.config.file", web]
            target.caFile = pki.certificate
            target.basicAuth = ("prometheus", "scrape-secret")
        }
        // 10 ms windows: a scrape's figures are at most one window old, which keeps rate() within 0.2 %.
        let daemon = try Daemon(
            [
                "--sysfs-root", tree.sys, "--dev-root", tree.dev, "--proc-root", tree.proc, "--backend", "sysfs",
                "--listen", "127.0.0.1:\(port)", "--scrape-interval", "0.01", "--duration", "60",
            ] + extra)
        try await daemon.waitSampling()
        let receiver = try ReceiverProcess(kind, scraping: target)
        try await receiver.waitReady()
        // Prometheus applies new targets every 5 s: wait for its first scrape.
        try await waitUntil("the first scrape", seconds: 20) { !((try? await receiver.samples("up{job=\"rapl\"}")) ?? []).isEmpty }
        let added = try await drawSteadyPower([(tree, 2_000_000)], seconds: 11)[0]
        let steadyEnd = Date().timeIntervalSince1970
        let selector = "rapl_energy_joules_total{job=\"rapl\",component=\"package-0\",socket=\"0\"}"
        let expected = Double(added) / 1e6
        try await waitUntil("a scrape after the counters stopped", seconds: 15) {
            (try? await receiver.samples(selector))?.last?.1 == expected
        }
        let rate = try await receiver.query("rate(\(selector)[8s])", at: steadyEnd - 1)
        let scraped = try await receiver.samples(selector)
        let up = try await receiver.samples("up{job=\"rapl\"}")
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        await receiver.stop()
        let watts = try #require(rate, "rate() has a value")
        #expect(abs(watts - 2.0) / 2.0 < 0.02, "rate() \(watts) W vs the fake tree's 2 W")
        #expect(scraped.count >= 10)
        #expect(zip(scraped, scraped.dropFirst()).allSatisfy { $0.1 <= $1.1 }, "never backwards, through the wraps")
        #expect(scraped.last?.1 == expected, "the exact joules")
        #expect(!up.isEmpty && up.allSatisfy { $0.1 == 1 }, "\(kind): every scrape up")
        if secured { #expect(daemon.log.contains("serving /metrics on https://"), "\(daemon.log)") }
    }

    /// The Grafana dashboard's queries (deploy/grafana), run by a real Prometheus that holds one host's
    /// pushed windows (2 W) and another's scraped counter (3 W): every panel reads both paths, and each
    /// variable picks one.
    @Test func theDashboardWorksFromEitherPath() async throws {
        let port = freePort()
        let pushed = tree()
        let scraped = tree()
        let receiver = try ReceiverProcess(.prometheus, scraping: .init(address: "127.0.0.1:\(port)"))
        try await receiver.waitReady()
        let source = "dash-\(UUID().uuidString.prefix(8))"
        let pusher = try daemon(pushed, receiver.writeURL, source: source, duration: 60)
        let puller = try Daemon(
            scraped.sysfsArguments + ["--listen", "127.0.0.1:\(port)", "--scrape-interval", "0.01", "--duration", "60"])
        try await pusher.waitSampling()
        try await puller.waitSampling()
        try await waitUntil("the first scrape", seconds: 20) { !((try? await receiver.samples("up{job=\"rapl\"}")) ?? []).isEmpty }
        _ = try await drawSteadyPower([(pushed, 2_000_000), (scraped, 3_000_000)], seconds: 11)
        let end = Date().timeIntervalSince1970
        try await Task.sleep(for: .milliseconds(1500))  // the last push lands (0.5 s interval)

        let root = DeployFilesTests.root
        let dashboard = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: root + "/deploy/grafana/dashboards/rapl-energy.json")))
        let panels = try #require((dashboard as? [String: Any])?["panels"] as? [[String: Any]])
        func expression(_ title: String, source: String, instance: String) throws -> String {
            let panel = try #require(panels.first { ($0["title"] as? String)?.hasPrefix(title) == true }, "panel \(title)")
            let expr = try #require((panel["targets"] as? [[String: Any]])?.first?["expr"] as? String)
            // What Grafana substitutes: the variables, and the intervals for a dashboard over the last 8 s.
            return expr.replacingOccurrences(of: "$source", with: source).replacingOccurrences(of: "$instance", with: instance)
                .replacingOccurrences(of: "$__rate_interval_ms", with: "4000").replacingOccurrences(of: "$__rate_interval", with: "4s")
                .replacingOccurrences(of: "$__range", with: "8s")
        }
        func packageValue(_ title: String, source: String = ".*", instance: String = ".*") async throws -> Double? {
            let series = try await receiver.vector(try expression(title, source: source, instance: instance), at: end - 1)
            return series.first { $0.labels["component"] == "package-0" || $0.labels["component"] == nil }?.value
        }
        let both = try await packageValue("Power")
        let pushOnly = try await packageValue("Power", instance: "none-such")
        let scrapeOnly = try await packageValue("Power", source: "none-such", instance: "127.0.0.1:\(port)")
        let energy = try await packageValue("Energy over the selected range")
        let total = try await packageValue("Energy per run")
        for title in ["Exporter: samples dropped", "Exporter: read errors"] {
            // Valid PromQL, and not silently empty: the zero-valued drop and read-error counters are series too.
            let series = try await receiver.vector(try expression(title, source: ".*", instance: ".*"), at: end - 1)
            #expect(!series.isEmpty, "panel \(title) returns no series")
        }
        // The dashboard's variables resolve: each label_values() query finds the host of its path.
        let variables = try #require(((dashboard as? [String: Any])?["templating"] as? [String: Any])?["list"] as? [[String: Any]])
        var resolved: [String: [String]] = [:]
        for variable in variables {
            let name = try #require(variable["name"] as? String)
            let query = try #require(variable["query"] as? String)
            let inner = try #require(query.firstMatch(of: /^label_values\((.+), *([a-zA-Z_]+)\)$/), "\(name): \(query)")
            resolved[name] = try await receiver.labelValues(String(inner.2), match: String(inner.1))
        }
        pusher.process.terminate()
        puller.process.terminate()
        #expect(try await pusher.waitExit() == 0, "\(pusher.log)")
        #expect(try await puller.waitExit() == 0, "\(puller.log)")
        await receiver.stop()
        func near(_ value: Double?, _ expected: Double, within: Double) -> Bool { value.map { abs($0 - expected) / expected < within } ?? false }
        #expect(near(both, 5, within: 0.03), "both paths: \(String(describing: both)) W")
        #expect(near(pushOnly, 2, within: 0.03), "pushed: \(String(describing: pushOnly)) W")
        #expect(near(scrapeOnly, 3, within: 0.03), "scraped: \(String(describing: scrapeOnly)) W")
        #expect(near(energy, 40, within: 0.05), "energy over 8 s: \(String(describing: energy)) J")
        #expect(near(total, 0.040, within: 0.05), "total: \(String(describing: total)) kJ")
        #expect(resolved["source"]?.contains(source) == true, "the source variable: \(resolved)")
        #expect(resolved["instance"]?.contains("127.0.0.1:\(port)") == true, "the instance variable: \(resolved)")
    }

    /// Power limits and throttling, pushed and scraped, in a real Prometheus: an Intel fake tree with powercap
    /// constraints (PL1 65 W, PL2 90 W) and the package perf-status MSR, which the test advances by 0.5 s
    /// of throttling in small steps; the pushed counter ends at exactly 0.5 s, and the dashboard's limit
    /// and throttling panels return series for both paths.
    @Test func powerLimitsAndThrottlingArriveAndTheirPanelsShowThem() async throws {
        let port = freePort()
        let machine = tree()
        machine.cpu(0, package: 0)
        machine.cpuinfo(vendor: "GenuineIntel", family: 6, model: 0x8C)
        machine.constraint("intel-rapl:0", 0, name: "long_term", microwatts: 65_000_000, windowMicroseconds: 28_000_000)
        machine.constraint("intel-rapl:0", 1, name: "short_term", microwatts: 90_000_000, windowMicroseconds: 2_440)
        machine.msr(cpu: 0, MSRBackend.Register.intelPowerUnit, 0x000A_0E03)  // time unit 1/1024 s
        machine.msr(cpu: 0, PowerLimitReader.Register.packagePerfStatus, 0xFFFF_FF80)  // wraps during the test
        let receiver = try ReceiverProcess(.prometheus, scraping: .init(address: "127.0.0.1:\(port)"))
        try await receiver.waitReady()
        let source = "limits-\(UUID().uuidString.prefix(8))"
        let pusher = try daemon(machine, receiver.writeURL, source: source, duration: 60, extra: ["--power-limits-interval", "0.5"])
        let puller = try Daemon(
            machine.sysfsArguments + [
                "--dev-root", machine.dev, "--proc-root", machine.proc, "--listen", "127.0.0.1:\(port)", "--power-limits-interval", "0.5",
                "--duration", "60",
            ])
        try await pusher.waitSampling()
        try await puller.waitSampling()
        try await waitUntil("the first scrape", seconds: 20) { !((try? await receiver.samples("up{job=\"rapl\"}")) ?? []).isEmpty }
        // 4 steps of 128 units (0.125 s) 0.6 s apart: never more throttled time than time passed.
        for i in 1...4 {
            machine.msr(cpu: 0, PowerLimitReader.Register.packagePerfStatus, (0xFFFF_FF80 + UInt64(i) * 128) & 0xFFFF_FFFF)
            try await Task.sleep(for: .milliseconds(600))
        }
        let throttled = "rapl_throttled_seconds_total{source=\"\(source)\",component=\"package-0\"}"
        try await waitUntil("the throttled time pushed", seconds: 15) { (try? await receiver.samples(throttled))?.last?.1 == 0.5 }
        try await waitUntil("the throttled time scraped", seconds: 15) {
            (try? await receiver.samples("rapl_throttled_seconds_total{job=\"rapl\",component=\"package-0\"}"))?.last?.1 == 0.5
        }
        let end = Date().timeIntervalSince1970
        let pl1 = try await receiver.samples("rapl_power_limit_watts{source=\"\(source)\",component=\"package-0\",constraint=\"long_term\"}")
        let window = try await receiver.samples("rapl_power_limit_time_window_seconds{job=\"rapl\",constraint=\"long_term\"}")
        let dashboard = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: DeployFilesTests.root + "/deploy/grafana/dashboards/rapl-energy.json")))
        let panels = try #require((dashboard as? [String: Any])?["panels"] as? [[String: Any]])
        func panelSeries(_ title: String, source: String, instance: String) async throws -> [(labels: [String: String], value: Double)] {
            let panel = try #require(panels.first { ($0["title"] as? String)?.hasPrefix(title) == true }, "panel \(title)")
            let expr = try #require((panel["targets"] as? [[String: Any]])?.first?["expr"] as? String)
                .replacingOccurrences(of: "$source", with: source).replacingOccurrences(of: "$instance", with: instance)
                .replacingOccurrences(of: "$__rate_interval", with: "4s")
            return try await receiver.vector(expr, at: end)
        }
        let limitsPushed = try await panelSeries("Power limits", source: source, instance: "none-such")
        let limitsScraped = try await panelSeries("Power limits", source: "none-such", instance: "127.0.0.1:\(port)")
        let throttlePushed = try await panelSeries("Throttled by RAPL", source: source, instance: "none-such")
        let throttleScraped = try await panelSeries("Throttled by RAPL", source: "none-such", instance: "127.0.0.1:\(port)")
        pusher.process.terminate()
        puller.process.terminate()
        #expect(try await pusher.waitExit() == 0, "\(pusher.log)")
        #expect(try await puller.waitExit() == 0, "\(puller.log)")
        await receiver.stop()
        #expect(pl1.last?.1 == 65, "\(pl1)")
        #expect(window.last?.1 == 28)
        #expect(Set(limitsPushed.compactMap { $0.labels["constraint"] }) == ["long_term", "short_term"], "\(limitsPushed)")
        #expect(limitsScraped.first { $0.labels["constraint"] == "long_term" }?.value == 65, "\(limitsScraped)")
        #expect(throttlePushed.count == 1 && throttleScraped.count == 1, "pushed \(throttlePushed), scraped \(throttleScraped)")
        #expect(pusher.log.contains("power limits (sysfs): package-0 long_term 65.0 W over 28.0 s"), "\(pusher.log)")
        #expect(!pusher.log.contains("impossible"), "no throttle glitch: \(pusher.log)")
    }

    /// Remote write 2.0 into the receivers there are: Prometheus 3.5 takes it (auto stays on 2.0);
    /// Prometheus 2.42 and VictoriaMetrics 1.145 answer a 2.0 request 2xx without the Written headers (they
    /// read it as an empty 1.0 request), so auto sends the same samples again as 1.0 — and every window
    /// arrives exactly once with the exact energy, across a counter wrap.
    @Test(arguments: [ReceiverProcess.Kind.prometheus3, .prometheus, .victoriaMetrics145])
    func remoteWrite2OrItsFallbackDeliversEveryWindowOnce(_ kind: ReceiverProcess.Kind) async throws {
        let receiver = try ReceiverProcess(kind)
        try await receiver.waitReady()
        let (daemon, source, added) = try await pushRun(
            { try self.daemon($0, receiver.writeURL, source: $1, duration: 60, extra: ["--remote-write-protocol", "auto", "--cumulative"]) },
            prefix: "rw2")
        let windows = try #require(daemon.windowCount, "\(daemon.log)")
        let selector = "pyjoules_remote_write_energy_uj{source=\"\(source)\",component=\"package-0\",socket=\"0\"}"
        try? await waitUntil("all samples to be searchable", seconds: 15) { ((try? await receiver.samples(selector))?.count ?? 0) >= windows }
        let pkg = try await receiver.samples(selector)
        let total = try await receiver.samples("rapl_energy_joules_total{source=\"\(source)\",component=\"package-0\"}")
        await receiver.stop()
        #expect(pkg.count == windows, "every window once: \(pkg.count) samples for \(windows) windows")
        #expect(pkg.reduce(0) { $0 + $1.1 } == Double(added), "the exact µJ, across a wrap")
        #expect(total.last?.1 == Double(added) / 1e6, "the counter, typed a counter in 2.0's metadata")
        let fellBack = daemon.log.components(separatedBy: "receiver does not take remote write 2.0").count - 1
        if kind == .prometheus3 {
            #expect(fellBack == 0, "Prometheus 3.5 takes 2.0: \(daemon.log)")
        } else {
            #expect(fellBack == 1, "one fallback, remembered: \(daemon.log)")
            #expect(daemon.log.contains("HTTP 204 without X-Prometheus-Remote-Write-Samples-Written"), "\(daemon.log)")
        }
    }

    /// OTLP/HTTP (gzip) into VictoriaMetrics 1.145's OpenTelemetry endpoint: the energy arrives as the
    /// cumulative sum `hw.energy`, its last value exactly the fake counter's change across a wrap, and
    /// VictoriaMetrics' `increase()` over the run within 1 % of it.
    @Test func otlpIntoVictoriaMetricsCarriesTheExactEnergy() async throws {
        let receiver = try ReceiverProcess(.victoriaMetrics145)
        try await receiver.waitReady()
        let (daemon, source, added) = try await pushRun(
            { tree, source in
                try Daemon(
                    tree.sysfsArguments + [
                        "--otlp-metrics-endpoint", "http://127.0.0.1:\(receiver.port)/opentelemetry/v1/metrics", "--otlp-compression", "gzip",
                        "--service-label", source, "--scrape-interval", "0.05", "--push-interval", "0.5", "--duration", "60",
                    ])
            }, prefix: "otlp")
        let selector = "{__name__=\"hw.energy\",source=\"\(source)\",component=\"package-0\"}"
        let expected = Double(added) / 1e6
        try? await waitUntil("the last sum to be searchable", seconds: 15) { (try? await receiver.samples(selector))?.last?.1 == expected }
        let sums = try await receiver.samples(selector)
        let increase = try await receiver.query("increase(\(selector)[1h])", at: Date().timeIntervalSince1970)
        await receiver.stop()
        #expect(sums.last?.1 == expected, "the cumulative sum ends at the exact joules: \(sums.suffix(3))")
        #expect(zip(sums, sums.dropFirst()).allSatisfy { $0.1 <= $1.1 }, "monotonic through the wrap")
        let grown = try #require(increase, "increase() has a value")
        #expect(abs(grown - expected) / expected < 0.01, "increase() \(grown) J vs the counter's \(expected) J")
        #expect(daemon.log.contains("pushing OTLP to"), "\(daemon.log)")
        #expect(daemon.log.contains("everything delivered"), "\(daemon.log)")
    }

    @Test func aPrometheusOutageLosesNoWindow() async throws {
        let receiver = try ReceiverProcess(.prometheus)
        try await receiver.waitReady()
        let tree = tree()
        let source = "outage-\(UUID().uuidString.prefix(8))"
        let daemon = try daemon(tree, receiver.writeURL, source: source, duration: 60, extra: ["--max-retry-batches", "100"])
        try await daemon.waitSampling()
        let added = try await advance(tree, steps: 150, pace: .milliseconds(25)) { i in
            if i == 30 {
                await receiver.stop()
                try await Task.sleep(for: .milliseconds(1500))  // three push intervals with nobody listening
                try receiver.start()
                try await receiver.waitReady()
            }
        }
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        #expect(daemon.log.contains("failed"), "the outage was noticed")
        let windows = try #require(daemon.windowCount)
        let pkg = try await receiver.samples("pyjoules_remote_write_energy_uj{source=\"\(source)\",component=\"package-0\"}")
        #expect(pkg.count == windows, "no window is missing after the outage: \(daemon.log)")
        #expect(pkg.reduce(0) { $0 + $1.1 } == Double(added))
        await receiver.stop()
    }
}

/// The daemon against a scripted receiver: what is retried and what is not.
@Suite struct ScriptedReceiverTests {
    func run(_ script: [ScriptedReceiver.Action], seconds: Double, extra: [String] = []) async throws -> (ScriptedReceiver, Daemon) {
        let receiver = try await ScriptedReceiver(script)
        let tree = FakeTree.powercap()
        let daemon = try Daemon(
            tree.sysfsArguments + [
                "--remote-write-url", receiver.url,
                "--scrape-interval", "0.05", "--push-interval", "0.5", "--duration", String(seconds),
            ] + extra)
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        await receiver.shutdown()
        return (receiver, daemon)
    }

    func windows(_ requests: [ScriptedReceiver.Request]) -> [Int64] {
        requests.compactMap(\.writeRequest).flatMap { $0.samples(["__name__": "pyjoules_remote_write_energy_uj"]).map(\.0) }
    }

    /// A push wakes one thread: the event loop's timer fires, and the batch is encoded, sent on the
    /// kept connection and answered there. Swift concurrency's thread pool (libdispatch's workers, and
    /// with them its once-a-second monitor) is never started while the daemon runs.
    @Test func pushesRunOnTheEventLoopOverOneConnection() async throws {
        let receiver = try await ScriptedReceiver([], keepAlive: true)
        let tree = FakeTree.powercap()
        let daemon = try Daemon(
            tree.sysfsArguments + ["--remote-write-url", receiver.url, "--scrape-interval", "0.05", "--push-interval", "0.3", "--duration", "5"])
        try await waitUntil("three pushes") { receiver.requests.count >= 3 }
        let pid = daemon.process.processIdentifier
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        let names = tasks.compactMap { try? String(contentsOfFile: "/proc/\(pid)/task/\($0)/comm", encoding: .utf8) }
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        daemon.process.terminate()
        #expect(try await daemon.waitExit() == 0, "\(daemon.log)")
        await receiver.shutdown()
        #expect(names.contains("rapl-sampler"))
        #expect(names.filter { $0.hasPrefix("NIO-") }.count == 1, "\(names)")
        // libdispatch names its pool workers after their queue ("com.apple.root.default-qos", cut to
        // 15 characters); only its manager and signal threads (".overcommit") may exist.
        #expect(!names.contains { $0.hasSuffix("-qos") }, "\(names)")
        #expect(receiver.connections == 1)
        #expect(receiver.requests.count >= 3)
    }

    @Test func serverErrorIsRetriedWithTheSameBodyThenEverythingArrives() async throws {
        let (receiver, daemon) = try await run([.respond(500, [], "try later")], seconds: 2)
        let requests = receiver.requests
        try #require(requests.count >= 2)
        #expect(requests[1].body == requests[0].body)
        let first = requests[0]
        #expect(first.header("Content-Encoding") == "snappy")
        #expect(first.header("Content-Type") == "application/x-protobuf")
        #expect(first.header("X-Prometheus-Remote-Write-Version") == "0.1.0")
        #expect(first.header("User-Agent") == "rapl-exporter/\(ExporterVersion.current)")
        let accepted = windows(Array(requests.dropFirst()))
        #expect(accepted.count == daemon.windowCount)
        #expect(Set(accepted).count == accepted.count)
    }

    @Test func tooManyRequestsWaitsForRetryAfter() async throws {
        let (receiver, _) = try await run([.respond(429, [("Retry-After", "2")], "slow down")], seconds: 3)
        let requests = receiver.requests
        try #require(requests.count >= 2)
        #expect(requests[1].body == requests[0].body)
        #expect(requests[1].time.timeIntervalSince(requests[0].time) >= 1.95)
    }

    @Test func badRequestIsDroppedNotRetried() async throws {
        let bad = ScriptedReceiver.Action.respond(400, [], "out of order sample")
        let (receiver, daemon) = try await run([bad, bad], seconds: 2)
        let requests = receiver.requests
        try #require(requests.count >= 3)
        #expect(requests[1].body != requests[0].body)
        let rejected = Set(windows([requests[0]]))
        #expect(!rejected.isEmpty)
        // The rejected request's energy alone, rejected again; then its self-metrics alone, accepted.
        #expect(Set(windows([requests[1]])) == rejected)
        #expect(windows([requests[2]]).isEmpty)
        #expect(rejected.isDisjoint(with: windows(Array(requests.dropFirst(2)))))
        #expect(daemon.log.contains("receiver rejected"))
        #expect(daemon.log.contains("out of order sample"))
        let dropped = requests.last?.writeRequest?.samples(["__name__": "rapl_exporter_samples_dropped_total", "reason": "rejected"]).last?.1
        #expect((dropped ?? 0) > 0)
    }

    @Test func aHangingReceiverIsBoundedByTheRequestTimeout() async throws {
        let (receiver, daemon) = try await run([.hang], seconds: 2.5, extra: ["--request-timeout", "0.5"])
        let requests = receiver.requests
        try #require(requests.count >= 2)
        #expect(requests[1].body == requests[0].body)
        let gap = requests[1].time.timeIntervalSince(requests[0].time)
        #expect(gap >= 0.5 && gap < 3)
        #expect(daemon.log.contains("request timeout"))
        #expect(windows(Array(requests.dropFirst())).count == daemon.windowCount)
    }
}
