import RemoteWriteProtobuf

extension Prometheus_WriteRequest {
    /// Samples of the series whose labels include all of `match`, in request order.
    public func samples(_ match: [String: String]) -> [(Int64, Double)] {
        timeseries.filter { ts in
            match.allSatisfy { k, v in ts.labels.contains { $0.name == k && $0.value == v } }
        }.flatMap { $0.samples.map { ($0.timestamp, $0.value) } }
    }
}
