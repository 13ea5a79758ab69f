import RAPLBackend
import Support

/// The two exposition formats `/metrics` serves: the Prometheus text format 0.0.4, and OpenMetrics 1.0
/// when the scraper's `Accept` header asks for it (Prometheus does when it can parse it).
public enum ExpositionFormat: Sendable, Equatable {
    case prometheusText
    case openMetrics

    public var contentType: String {
        switch self {
        case .prometheusText: "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }

    /// OpenMetrics when `accept` lists `application/openmetrics-text` (any version 1.x, or none) with a
    /// non-zero quality; the text format otherwise.
    public static func negotiate(accept: String?) -> ExpositionFormat {
        guard let accept else { return .prometheusText }
        for range in accept.split(separator: ",") {
            let parts = range.split(separator: ";").map { $0.trimmingWhitespace() }
            guard parts.first?.lowercased() == "application/openmetrics-text" else { continue }
            var acceptable = true
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingWhitespace().lowercased() }
                guard pair.count == 2 else { continue }
                if pair[0] == "version", !pair[1].hasPrefix("1.") { acceptable = false }
                if pair[0] == "q", let q = Double(pair[1]), q <= 0 { acceptable = false }
            }
            if acceptable { return .openMetrics }
        }
        return .prometheusText
    }
}

/// The process figures Prometheus users expect from every exporter (`process_*`), read at each scrape.
public struct ProcessFigures: Sendable, Equatable {
    public var cpuSeconds: Double
    public var residentBytes: UInt64
    public var virtualBytes: UInt64
    public var startTimeSeconds: Double
    public var openFileDescriptors: Int
    public var maxFileDescriptors: UInt64

    public init(
        cpuSeconds: Double, residentBytes: UInt64, virtualBytes: UInt64, startTimeSeconds: Double, openFileDescriptors: Int,
        maxFileDescriptors: UInt64
    ) {
        self.cpuSeconds = cpuSeconds
        self.residentBytes = residentBytes
        self.virtualBytes = virtualBytes
        self.startTimeSeconds = startTimeSeconds
        self.openFileDescriptors = openFileDescriptors
        self.maxFileDescriptors = maxFileDescriptors
    }
}

/// Everything one scrape shows besides the sampler's figures.
public struct ScrapeContext: Sendable {
    public var nameStyle: NameStyle
    public var version: String
    public var backend: String
    /// When the exporter started (seconds since the epoch): the counters' `_created`.
    public var startTimeSeconds: Double
    public var process: ProcessFigures?
    /// The remote writer's counters, when pushing.
    public var push: PushFigures?
    /// The latest read of the power limits and throttle counters, when read.
    public var limits: PowerLimitSnapshot?

    public init(nameStyle: NameStyle, version: String, backend: String, startTimeSeconds: Double, process: ProcessFigures?, push: PushFigures? = nil)
    {
        self.nameStyle = nameStyle
        self.version = version
        self.backend = backend
        self.startTimeSeconds = startTimeSeconds
        self.process = process
        self.push = push
    }
}

/// Writes a scrape's body. Every family has its HELP and TYPE; names carry their unit; label values are
/// escaped; energy is exact (µJ written as joules with six decimals, no floating-point rounding).
public struct Exposition {
    public let format: ExpositionFormat
    private(set) var out: [UInt8] = []

    public init(format: ExpositionFormat) { self.format = format }

    public static func render(_ figures: ScrapeFigures, _ context: ScrapeContext, format: ExpositionFormat) -> [UInt8] {
        var e = Exposition(format: format)
        e.write(figures, context)
        return e.out
    }

    mutating func write(_ f: ScrapeFigures, _ c: ScrapeContext) {
        let labels = f.domains.map { SeriesTable.domainIdentity($0, c.nameStyle) }
        counter("rapl_energy_joules", MetricMetadata.help("rapl_energy_joules_total"), created: c.startTimeSeconds) {
            for i in f.domains.indices { $0.sample(labels[i], Self.joules(microjoules: f.totals[i])) }
        }
        counter(
            "rapl_exporter_read_errors", MetricMetadata.help("rapl_exporter_read_errors_total"),
            created: c.startTimeSeconds
        ) {
            for i in f.domains.indices { $0.sample(labels[i], String(f.readErrors[i])) }
        }
        counter("rapl_exporter_counter_glitches", MetricMetadata.help("rapl_exporter_counter_glitches_total"), created: c.startTimeSeconds) {
            for i in f.domains.indices { $0.sample(labels[i], String(f.glitches[i])) }
        }
        gauge("rapl_exporter_domain_stuck", MetricMetadata.help("rapl_exporter_domain_stuck")) {
            for i in f.domains.indices { $0.sample(labels[i], f.stuck[i] ? "1" : "0") }
        }
        counter("rapl_exporter_windows", MetricMetadata.help("rapl_exporter_windows_total"), created: c.startTimeSeconds) {
            $0.sample([], String(f.windows))
        }
        counter("rapl_exporter_windows_late", MetricMetadata.help("rapl_exporter_windows_late_total"), created: c.startTimeSeconds) {
            $0.sample([], String(f.lateWindows))
        }
        counter("rapl_exporter_windows_missed", MetricMetadata.help("rapl_exporter_windows_missed_total"), created: c.startTimeSeconds) {
            $0.sample([], String(f.missedWindows))
        }
        counter("rapl_exporter_clock_steps", MetricMetadata.help("rapl_exporter_clock_steps_total"), created: c.startTimeSeconds) {
            $0.sample([], String(f.clockSteps))
        }
        gauge("rapl_exporter_last_window_timestamp_seconds", "Wall-clock end of the latest window.") {
            $0.sample([], Self.seconds(microseconds: f.lastWindowMicroseconds))
        }
        if let p = c.push {
            counter(
                "rapl_exporter_samples_sent", MetricMetadata.help("rapl_exporter_samples_sent_total"), created: c.startTimeSeconds
            ) {
                $0.sample([], String(p.sent))
            }
            counter(
                "rapl_exporter_samples_failed", MetricMetadata.help("rapl_exporter_samples_failed_total"), created: c.startTimeSeconds
            ) {
                $0.sample([], String(p.failed))
            }
            counter("rapl_exporter_samples_retried", MetricMetadata.help("rapl_exporter_samples_retried_total"), created: c.startTimeSeconds) {
                $0.sample([], String(p.retried))
            }
            counter("rapl_exporter_samples_dropped", MetricMetadata.help("rapl_exporter_samples_dropped_total"), created: c.startTimeSeconds) {
                family in
                for d in p.dropped { family.sample([("reason", d.reason)], String(d.samples)) }
            }
            counter("rapl_exporter_requests", MetricMetadata.help("rapl_exporter_requests_total"), created: c.startTimeSeconds) {
                $0.sample([], String(p.requests))
            }
            gauge("rapl_exporter_samples_pending", MetricMetadata.help("rapl_exporter_samples_pending")) { $0.sample([], String(p.pending)) }
            gauge("rapl_exporter_push_duration_seconds", MetricMetadata.help("rapl_exporter_push_duration_seconds")) {
                $0.sample([], formatted(p.lastPushSeconds, 6))
            }
            for (name, value) in p.spool {
                if name.hasSuffix("_total") {
                    counter(String(name.dropLast(6)), MetricMetadata.help(name), created: c.startTimeSeconds) { $0.sample([], formatted(value, 0)) }
                } else {
                    gauge(name, MetricMetadata.help(name)) { $0.sample([], formatted(value, 0)) }
                }
            }
        }
        if let limits = c.limits { writeLimits(limits, c) }
        // An info family in OpenMetrics (samples `NAME_info`), a gauge named `NAME_info` in the text format.
        family(
            "rapl_exporter_build", MetricMetadata.help("rapl_exporter_build_info"), type: format == .openMetrics ? "info" : "gauge",
            suffix: "_info", created: nil
        ) { $0.sample([("version", c.version), ("backend", c.backend)], "1") }
        if let p = c.process {
            counter("process_cpu_seconds", "Total user and system CPU time spent in seconds.", created: nil) {
                $0.sample([], formatted(p.cpuSeconds, 6))
            }
            gauge("process_resident_memory_bytes", "Resident memory size in bytes.") { $0.sample([], String(p.residentBytes)) }
            gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.") { $0.sample([], String(p.virtualBytes)) }
            gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.") {
                $0.sample([], formatted(p.startTimeSeconds, 3))
            }
            gauge("process_open_fds", "Number of open file descriptors.") { $0.sample([], String(p.openFileDescriptors)) }
            gauge("process_max_fds", "Maximum number of open file descriptors.") { $0.sample([], String(p.maxFileDescriptors)) }
        }
        if format == .openMetrics { append("# EOF\n") }
    }

    /// The power-limit, TDP and throttle families, each written once with all its series.
    private mutating func writeLimits(_ limits: PowerLimitSnapshot, _ c: ScrapeContext) {
        let samples = limits.samples
        for name in PowerLimitSnapshot.seriesNames {
            let mine = samples.filter { $0.name == name }
            guard !mine.isEmpty else { continue }
            let body: (inout Family) -> Void = { family in
                for s in mine { family.sample(SeriesTable.domainIdentity(s.domain, c.nameStyle) + s.extra, formatted(s.value, 6)) }
            }
            if name.hasSuffix("_total") {
                counter(String(name.dropLast(6)), MetricMetadata.help(name), created: c.startTimeSeconds, body)
            } else {
                gauge(name, MetricMetadata.help(name), body)
            }
        }
    }

    /// A counter family: samples `NAME_total`, and in OpenMetrics `NAME_created` per series.
    private mutating func counter(_ name: String, _ help: String, created: Double?, _ samples: (inout Family) -> Void) {
        family(name, help, type: "counter", suffix: "_total", created: format == .openMetrics ? created : nil, samples)
    }

    private mutating func gauge(_ name: String, _ help: String, _ samples: (inout Family) -> Void) {
        family(name, help, type: "gauge", suffix: "", created: nil, samples)
    }

    private mutating func family(_ name: String, _ help: String, type: String, suffix: String, created: Double?, _ samples: (inout Family) -> Void) {
        // The text format names a family after its samples (`x_total`, `x_info`); OpenMetrics names it
        // without the suffix.
        let familyName = format == .openMetrics ? name : name + suffix
        append("# HELP \(familyName) \(Self.escapeHelp(help))\n# TYPE \(familyName) \(type)\n")
        var family = Family(name: name + suffix, createdName: created.map { _ in name + "_created" }, created: created.map { formatted($0, 3) })
        samples(&family)
        out.append(contentsOf: family.out)
    }

    struct Family {
        let name: String
        let createdName: String?
        let created: String?
        var out: [UInt8] = []

        mutating func sample(_ labels: [(String, String)], _ value: String) {
            let set = labels.isEmpty ? "" : "{" + labels.map { "\($0.0)=\"\(Exposition.escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
            out.append(contentsOf: "\(name)\(set) \(value)\n".utf8)
            if let createdName, let created { out.append(contentsOf: "\(createdName)\(set) \(created)\n".utf8) }
        }
    }

    private mutating func append(_ text: String) { out.append(contentsOf: text.utf8) }

    /// Label values: backslash, double quote and line feed escaped (both formats).
    static func escapeLabel(_ value: String) -> String {
        var s = ""
        for c in value.unicodeScalars {
            switch c {
            case "\\": s += "\\\\"
            case "\"": s += "\\\""
            case "\n": s += "\\n"
            default: s.unicodeScalars.append(c)
            }
        }
        return s
    }

    /// HELP text: backslash and line feed escaped.
    static func escapeHelp(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
    }

    /// µJ as joules, exactly: `12.345678`.
    static func joules(microjoules: UInt64) -> String {
        let fraction = String(microjoules % 1_000_000)
        return "\(microjoules / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)"
    }

    /// µs since the epoch as seconds, exactly.
    static func seconds(microseconds: Int64) -> String {
        microseconds < 0 ? "-" + joules(microjoules: UInt64(-microseconds)) : joules(microjoules: UInt64(microseconds))
    }
}
