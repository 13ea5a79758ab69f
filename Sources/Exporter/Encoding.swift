import RAPLBackend
import SwiftProtobuf

/// One sample waiting to be sent: a series (index into the writer's series table), a value, and a
/// timestamp in ms since the epoch.
public struct PendingSample: Sendable {
    public var series: Int
    public var value: Double
    public var timestamp: Int64

    public init(series: Int, value: Double, timestamp: Int64) {
        self.series = series
        self.value = value
        self.timestamp = timestamp
    }
}

/// Label sets for every series the writer emits, built once and reused for every request.
public struct SeriesTable: Sendable {
    private(set) var labels: [[Prometheus_Label]] = []
    private var index: [[String]: Int] = [:]

    public init() {}

    /// The series index for this metric and labels (sorted by name, `__name__` included, no empty
    /// values — remote write 1.0), adding it on first use.
    public mutating func series(_ name: String, _ pairs: [(String, String)]) -> Int {
        var all = [("__name__", name)] + pairs.filter { !$0.1.isEmpty }
        all.sort { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
        let key = all.flatMap { [$0.0, $0.1] }
        if let i = index[key] { return i }
        labels.append(all.map { pair in
            var label = Prometheus_Label()
            label.name = pair.0
            label.value = pair.1
            return label
        })
        index[key] = labels.count - 1
        return labels.count - 1
    }

    /// The labels of the domain series: component, socket, die (multi-die parts only), source.
    static func domainLabels(_ domain: Domain, _ settings: SeriesLabels) -> [(String, String)] {
        var pairs = [("component", domain.component(settings.nameStyle)), ("socket", String(domain.socket))]
        if let die = domain.die { pairs.append(("die", String(die))) }
        pairs.append(("source", settings.source))
        return pairs + settings.extra
    }

    /// A snappy-compressed protobuf `WriteRequest` with the samples grouped per series, each series'
    /// samples in the order given (time order).
    public func encode(_ samples: ArraySlice<PendingSample>) -> [UInt8] {
        var order: [Int] = []
        var grouped: [Int: [Prometheus_Sample]] = [:]
        for s in samples {
            var sample = Prometheus_Sample()
            sample.value = s.value
            sample.timestamp = s.timestamp
            if grouped[s.series] == nil { order.append(s.series) }
            grouped[s.series, default: []].append(sample)
        }
        var request = Prometheus_WriteRequest()
        request.timeseries = order.map { series in
            var ts = Prometheus_TimeSeries()
            ts.labels = labels[series]
            ts.samples = grouped[series]!
            return ts
        }
        let bytes: [UInt8] = (try? request.serializedBytes()) ?? []
        return Snappy.compress(bytes)
    }
}
