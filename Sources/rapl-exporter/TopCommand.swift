import ArgumentParser
import Exporter
import Logging
import RAPLBackend
import Support

/// `rapl-exporter top`: a live view of each domain's watts. Synchronous on purpose: it opens the
/// counters and drops its capabilities while the process has one thread (as `run` does), and then one
/// poll(2) waits for a key, a signal or the next refresh.
struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A live view of each domain's watts, limits and throttling, refreshed every second.",
        discussion: """
            Keys: q quits, b switches to the next backend that works here (with --backend auto). Follows NO_COLOR. \
            When stdout is not a terminal it prints one line per refresh instead. Exit status 0 after q or \
            --iterations, 128 + N after signal N (the terminal is restored either way), 1 when no backend works.
            """
    )

    @OptionGroup var reading: ReadingOptions

    @Option(parsing: .unconditional, help: .key(.topRefresh)) var refresh: Double = 1

    @Option(parsing: .unconditional, help: .key(.topIterations)) var iterations: Int?

    func run() throws {
        // The log would draw over the view: errors only.
        let reading = try resolveReading(self.reading.commandLine, logAtLeast: .error) { () throws(ConfigurationError) in
            guard refresh >= 0.05, refresh <= 3600, refresh.isFinite else {
                throw ConfigurationError("invalid --refresh \(refresh): expected seconds ≥ 0.05 and ≤ 3600")
            }
            if let iterations, iterations < 1 { throw ConfigurationError("invalid --iterations \(iterations): expected a whole number ≥ 1") }
        }
        var logger = Logger(label: "rapl-exporter.top")
        logger.logLevel = .error
        let facts = SystemFacts.current(paths: reading.paths)
        let selector = BackendSelector(paths: reading.paths, facts: facts, logger: logger)
        let (opened, unavailable, choice) = selector.openAll(reading.backend)
        guard let choice else {
            StandardError.write("rapl-exporter: no backend can read RAPL counters here; run 'rapl-exporter probe' for the reasons and fixes\n")
            for why in unavailable { StandardError.write("  \(why)\n") }
            throw ExitCode(1)
        }
        let limits = PowerLimitReader(paths: reading.paths, facts: facts, logger: logger)
        // Everything is open: the view needs no capability any more.
        try? Privileges.dropAll()
        let environment = ProcessEnvironment.current
        let color = (environment["NO_COLOR"] ?? "").isEmpty
        var view = LiveView(backend: choice, backends: opened.map(\.0), style: reading.nameStyle)
        let terminal = Terminal()
        terminal.enter()
        defer { terminal.restore() }
        let status = loop(&view, opened: opened, limits: limits, terminal: terminal, color: color)
        terminal.restore()
        if status != 0 { throw ExitCode(status) }
    }

    /// How long a status line stays on screen.
    static let statusShownFor = Duration.seconds(3)

    /// Refreshes until q, `--iterations`, a signal or a closed terminal; returns the exit status.
    func loop(
        _ view: inout LiveView, opened: [(BackendKind, any EnergyBackend)], limits: PowerLimitReader, terminal: Terminal, color: Bool
    ) -> Int32 {
        let clock = ContinuousClock()
        let start = clock.now
        var meter = EnergyMeter(backend: opened.first { $0.0 == view.backend }!.1, retryAfter: .zero)
        meter.read(now: .zero)
        var last = (at: clock.now, domains: meter.domains, totals: meter.totals)
        var lastLimits = clock.now
        view.update(limits: limits.read(now: .zero), seconds: 0)
        let interval = Duration(secondsValue: refresh)
        var next = clock.now + interval
        var shown = 0
        // A status (a switch, a key that cannot act) stays for a few refreshes: one 0.3 s frame is too
        // short to read.
        var statusSince: ContinuousClock.Instant?
        func draw() {
            if terminal.drawsScreens {
                let size = terminal.size
                terminal.draw(view.frame(width: size.columns, height: size.rows, color: color))
            }
        }
        draw()
        while true {
            let wait = clock.now.duration(to: next)
            switch terminal.wait(milliseconds: Int((wait.seconds * 1000).rounded(.up))) {
            case .key(let key) where key == UInt8(ascii: "q") || key == UInt8(ascii: "Q"):
                return 0
            case .key(let key) where key == UInt8(ascii: "b") || key == UInt8(ascii: "B"):
                // Either way the key leaves a status: the switch's, or why there is none.
                statusSince = clock.now
                guard let kind = view.nextBackend else {
                    view.status = "only \(view.backend) works here"
                    draw()
                    continue
                }
                view.switchTo(kind)
                meter = EnergyMeter(backend: opened.first { $0.0 == kind }!.1, retryAfter: .zero)
                meter.read(now: start.duration(to: clock.now))
                last = (clock.now, meter.domains, meter.totals)
                draw()
                continue
            case .key:
                continue
            case .resized:
                draw()
                continue
            case .signal(let signal):
                return 128 + signal
            case .closed:
                // Keys came from the terminal that drew the view: it is gone.
                if terminal.drawsScreens { return 129 }
                continue
            case .timeout:
                guard clock.now >= next else { continue }
            }
            let now = clock.now
            meter.read(now: start.duration(to: now))
            var energy: [UInt64?] = []
            for (i, domain) in meter.domains.enumerated() {
                let before = last.domains.firstIndex(of: domain).map { last.totals[$0] } ?? meter.totals[i]
                switch meter.statuses[i] {
                case .ok, .stuck: energy.append(meter.totals[i] &- before)
                case .failed, .glitch: energy.append(nil)
                }
            }
            view.update(domains: meter.domains, energy: energy, seconds: last.at.duration(to: now).seconds)
            view.update(limits: limits.read(now: start.duration(to: now)), seconds: lastLimits.duration(to: now).seconds)
            lastLimits = now
            last = (now, meter.domains, meter.totals)
            if terminal.drawsScreens { draw() } else { terminal.write(view.line() + "\n") }
            if let since = statusSince, since.duration(to: now) >= Self.statusShownFor {
                view.status = nil
                statusSince = nil
            }
            shown += 1
            if let iterations, shown >= iterations { return 0 }
            while next <= clock.now { next += interval }
        }
    }
}
