import RAPLBackend

/// Encodes a batch as an OTLP `ExportMetricsServiceRequest` (opentelemetry-proto's
/// collector/metrics/v1, protobuf): one resource (its attributes: `service.name`, `host.name`,
/// `OTEL_RESOURCE_ATTRIBUTES`), one scope (`rapl-exporter`, its version), one metric per name.
///
/// What is sent, and under which names:
/// - the energy as `hw.energy`, a cumulative monotonic Sum in joules (unit `J`), start time the exporter's
///   start — OpenTelemetry's hardware semantic conventions — with `hw.id` (`rapl:SOCKET:COMPONENT`, unique
///   per host), `hw.type` (`cpu` for package, core and uncore; `memory` for dram; `enclosure` for psys,
///   the platform domain) and `hw.name` (the component), plus the exporter's own `component`, `socket`
///   (`die`), `source` and `--label` labels, so a query written for the pushed series finds them;
/// - the self-metrics under their Prometheus names without `_total` (OTLP receivers that speak
///   Prometheus add it back for monotonic sums): counters as cumulative monotonic Sums, gauges as Gauges;
/// - not the per-window µJ series (`pyjoules_remote_write_energy_uj`): the cumulative Sum carries the same
///   energy exactly, and OTLP's data model has no place for a gauge of per-interval amounts.
///
/// Byte arrays assembled per request, each series' metric and attributes looked up once per request (a
/// push happens every few seconds; the sampler does not wait for it). Checked byte for byte against the generated types of the `opentelemetry-proto` package
/// (`Tests/Python/otlp_reference.py`).
public struct OTLPEncoder: Sendable {
    /// `KeyValue`s of the resource, in order.
    public var resource: [(String, String)]
    public var scopeVersion: String
    /// The exporter's start, for the cumulative sums' `start_time_unix_nano`.
    public var startNanoseconds: UInt64

    public init(resource: [(String, String)], scopeVersion: String, startNanoseconds: UInt64) {
        self.resource = resource
        self.scopeVersion = scopeVersion
        self.startNanoseconds = startNanoseconds
    }

    /// The OTLP name, unit and kind of a series' metric; nil for the series OTLP does not carry.
    static func metric(_ name: String, _ metadata: MetricMetadata) -> (name: String, unit: String, sum: Bool)? {
        if name == SeriesSettings.cumulativeMetricName { return ("hw.energy", "J", true) }
        guard metadata.kind != .unspecified, MetricMetadata.catalog[name] != nil else { return nil }
        let counter = metadata.kind == .counter
        let otlpName = counter && name.hasSuffix("_total") ? String(name.dropLast(6)) : name
        return (otlpName, metadata.unit == "seconds" ? "s" : metadata.unit == "joules" ? "J" : "", counter)
    }

    /// The data-point attributes of a series: its labels but `__name__`; for `hw.energy`, the hardware
    /// convention's first.
    static func attributes(_ labels: [(name: String, value: String)], energy: Bool) -> [(String, String)] {
        var pairs = labels.filter { $0.name != "__name__" }.map { ($0.name, $0.value) }
        if energy, let component = pairs.first(where: { $0.0 == "component" })?.1 {
            let socket = pairs.first { $0.0 == "socket" }?.1 ?? "0"
            let kind = component.hasPrefix("dram") ? "memory" : component.hasPrefix("psys") ? "enclosure" : "cpu"
            pairs = [("hw.id", "rapl:\(socket):\(component)"), ("hw.type", kind), ("hw.name", component)] + pairs
        }
        return pairs
    }

    /// The uncompressed request.
    public func encode(_ samples: ArraySlice<PendingSample>, table: SeriesTable) -> [UInt8] {
        // Metrics in order of first appearance, their points in sample order. Per series, looked up once:
        // its metric's index (-1: not carried) and its attributes, encoded.
        var order: [(name: String, unit: String, sum: Bool, help: String)] = []
        var points: [[UInt8]] = []
        var metricOf = [Int](repeating: -2, count: table.count)
        var attributesOf = [[UInt8]](repeating: [], count: table.count)
        for s in samples {
            if metricOf[s.series] == -2 {
                let labels = table.labels[s.series]
                let name = labels.first { $0.name == "__name__" }?.value ?? ""
                let metadata = table.metadata[s.series]
                if let (otlpName, unit, sum) = Self.metric(name, metadata) {
                    if let i = order.firstIndex(where: { $0.name == otlpName }) {
                        metricOf[s.series] = i
                    } else {
                        metricOf[s.series] = order.count
                        order.append((otlpName, unit, sum, metadata.help))
                        points.append([])
                    }
                    attributesOf[s.series] = Self.attributes(labels, energy: otlpName == "hw.energy").flatMap { Self.keyValue(7, $0.0, $0.1) }
                } else {
                    metricOf[s.series] = -1
                }
            }
            let m = metricOf[s.series]
            guard m >= 0 else { continue }
            let sum = order[m].sum
            // NumberDataPoint { fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3; double as_double = 4;
            // repeated KeyValue attributes = 7 }, as field 1 of Sum or Gauge.
            let attributes = attributesOf[s.series]
            let length = (sum ? 9 : 0) + 18 + attributes.count
            points[m].append(0x0A)
            Protobuf.appendVarint(UInt64(length), to: &points[m])
            if sum { Self.fixed64(2, startNanoseconds, to: &points[m]) }
            Self.fixed64(3, UInt64(max(0, s.timestamp)) &* 1_000_000, to: &points[m])
            Self.fixed64(4, s.value.bitPattern, to: &points[m])
            points[m] += attributes
        }
        var metrics: [UInt8] = []
        for (i, kind) in order.enumerated() {
            var metric: [UInt8] = []
            Self.string(1, kind.name, to: &metric)
            Self.string(2, kind.help, to: &metric)
            Self.string(3, kind.unit, to: &metric)
            if kind.sum {
                // Sum { repeated NumberDataPoint data_points = 1; temporality = 2 (CUMULATIVE); is_monotonic = 3 }
                Self.field(7, points[i] + [0x10, 0x02, 0x18, 0x01], to: &metric)
            } else {
                Self.field(5, points[i], to: &metric)  // Gauge { data_points = 1 }
            }
            Self.field(2, metric, to: &metrics)
        }
        var scope: [UInt8] = []
        Self.string(1, "rapl-exporter", to: &scope)
        Self.string(2, scopeVersion, to: &scope)
        var scopeMetrics: [UInt8] = []
        Self.field(1, scope, to: &scopeMetrics)
        scopeMetrics += metrics
        var resourceBody: [UInt8] = []
        for (key, value) in resource { resourceBody += Self.keyValue(1, key, value) }
        var resourceMetrics: [UInt8] = []
        Self.field(1, resourceBody, to: &resourceMetrics)
        Self.field(2, scopeMetrics, to: &resourceMetrics)
        var request: [UInt8] = []
        Self.field(1, resourceMetrics, to: &request)
        return request
    }

    /// `KeyValue { string key = 1; AnyValue value = 2 { string string_value = 1 } }` as field `number`.
    static func keyValue(_ number: UInt64, _ key: String, _ value: String) -> [UInt8] {
        var any: [UInt8] = []
        string(1, value, to: &any)
        var body: [UInt8] = []
        string(1, key, to: &body)
        field(2, any, to: &body)
        var out: [UInt8] = []
        field(number, body, to: &out)
        return out
    }

    /// A length-delimited field (written even when empty: messages and set oneofs are).
    static func field(_ number: UInt64, _ body: [UInt8], to out: inout [UInt8]) {
        Protobuf.appendVarint(number << 3 | 2, to: &out)
        Protobuf.appendVarint(UInt64(body.count), to: &out)
        out += body
    }

    /// A proto3 string: left out when empty.
    static func string(_ number: UInt64, _ text: String, to out: inout [UInt8]) {
        guard !text.isEmpty else { return }
        field(number, Array(text.utf8), to: &out)
    }

    @inline(__always)
    static func fixed64(_ number: UInt64, _ value: UInt64, to out: inout [UInt8]) {
        out.append(UInt8(number << 3 | 1))
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }
}

/// What an OTLP/HTTP answer's body says: `ExportMetricsServiceResponse { ExportMetricsPartialSuccess
/// partial_success = 1 { int64 rejected_data_points = 1; string error_message = 2 } }`.
enum OTLPResponse {
    /// The rejected points and the message; nil when the body holds no partial success (or is not protobuf).
    static func partialSuccess(_ body: [UInt8]) -> (rejected: UInt64, message: String)? {
        var i = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while i < body.count, shift < 64 {
                let byte = body[i]
                i += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
            return nil
        }
        guard let key = varint(), key == 0x0A, let length = varint(), length <= UInt64(body.count - i) else { return nil }
        let end = i + Int(length)
        var rejected: UInt64 = 0
        var message = ""
        while i < end {
            guard let field = varint() else { return nil }
            switch field {
            case 0x08:
                guard let v = varint() else { return nil }
                rejected = v
            case 0x12:
                guard let n = varint(), n <= UInt64(end - i) else { return nil }
                message = String(decoding: body[i..<i + Int(n)], as: UTF8.self)
                i += Int(n)
            default: return nil
            }
        }
        return (rejected, message)
    }
}
