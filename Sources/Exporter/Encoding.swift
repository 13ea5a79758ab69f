import RAPLBackend

/// One sample waiting to be sent: a series (index into the writer's series table), a value, and a
/// timestamp in ms since the epoch.
public struct PendingSample: Sendable, Equatable {
    public var series: Int
    public var value: Double
    public var timestamp: Int64

    public init(series: Int, value: Double, timestamp: Int64) {
        self.series = series
        self.value = value
        self.timestamp = timestamp
    }
}

/// Label sets for every series the writer emits, built once: each is kept already encoded — as the
/// `labels` fields of a remote-write 1.0 `TimeSeries`, and as the `labels_refs` and `metadata` fields of a
/// 2.0 one (against the table's one symbols list) — so a request only copies those bytes.
public struct SeriesTable: Sendable {
    /// The label pairs of each series, sorted by name (`__name__` first).
    public private(set) var labels: [[(name: String, value: String)]] = []
    public private(set) var metadata: [MetricMetadata] = []
    /// `repeated Label labels = 1` of each series, wire-encoded.
    private(set) var encodedLabels: [[UInt8]] = []
    /// Remote write 2.0: every string the series use, `""` first (the spec requires it); a request sends
    /// the whole list (`repeated string symbols = 4`, encoded in `encodedSymbols`), so references never
    /// change as series are added.
    public private(set) var symbols: [String] = [""]
    private var symbolIndex: [String: UInt32] = ["": 0]
    private(set) var encodedSymbols: [UInt8] = [0x22, 0x00]
    /// Per series: `repeated uint32 labels_refs = 1` (packed), and `Metadata metadata = 5`, wire-encoded.
    private(set) var encodedReferences: [[UInt8]] = []
    private(set) var encodedMetadata: [[UInt8]] = []
    private var index: [[String]: Int] = [:]

    public init() {}

    public var count: Int { labels.count }

    /// The series index for this metric and labels (sorted by name, `__name__` included, no empty
    /// values — remote write 1.0), adding it on first use. Its metadata: `metadata`, else the catalog's.
    public mutating func series(_ name: String, _ pairs: [(String, String)], metadata given: MetricMetadata? = nil) -> Int {
        var all = [("__name__", name)] + pairs.filter { !$0.1.isEmpty }
        all.sort { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
        let key = all.flatMap { [$0.0, $0.1] }
        if let i = index[key] { return i }
        labels.append(all.map { (name: $0.0, value: $0.1) })
        let meta = given ?? MetricMetadata.catalog[name] ?? MetricMetadata(.unspecified, "")
        metadata.append(meta)
        var references: [UInt8] = []
        for string in key { Protobuf.appendVarint(UInt64(symbol(string)), to: &references) }
        var refs: [UInt8] = [0x0A]
        Protobuf.appendVarint(UInt64(references.count), to: &refs)
        encodedReferences.append(refs + references)
        // Metadata { MetricType type = 1; uint32 help_ref = 3; uint32 unit_ref = 4; } (zero fields left out).
        var fields: [UInt8] = []
        if meta.kind != .unspecified { fields += [0x08, meta.kind.rawValue] }
        let help = symbol(meta.help)
        if help != 0 {
            fields.append(0x18)
            Protobuf.appendVarint(UInt64(help), to: &fields)
        }
        let unit = symbol(meta.unit)
        if unit != 0 {
            fields.append(0x20)
            Protobuf.appendVarint(UInt64(unit), to: &fields)
        }
        var encodedMeta: [UInt8] = [0x2A]
        Protobuf.appendVarint(UInt64(fields.count), to: &encodedMeta)
        encodedMetadata.append(encodedMeta + fields)
        var bytes: [UInt8] = []
        for (name, value) in all {
            // Label { string name = 1; string value = 2; } as field 1 of TimeSeries.
            let n = name.utf8.count
            let v = value.utf8.count
            let body = (n > 0 ? 1 + Protobuf.varintSize(UInt64(n)) + n : 0) + (v > 0 ? 1 + Protobuf.varintSize(UInt64(v)) + v : 0)
            bytes.append(0x0A)
            Protobuf.appendVarint(UInt64(body), to: &bytes)
            if n > 0 {
                bytes.append(0x0A)
                Protobuf.appendVarint(UInt64(n), to: &bytes)
                bytes.append(contentsOf: name.utf8)
            }
            if v > 0 {
                bytes.append(0x12)
                Protobuf.appendVarint(UInt64(v), to: &bytes)
                bytes.append(contentsOf: value.utf8)
            }
        }
        encodedLabels.append(bytes)
        index[key] = labels.count - 1
        return labels.count - 1
    }

    /// The reference of `string` in the symbols list, adding it on first use.
    private mutating func symbol(_ string: String) -> UInt32 {
        if let i = symbolIndex[string] { return i }
        let i = UInt32(symbols.count)
        symbols.append(string)
        symbolIndex[string] = i
        encodedSymbols.append(0x22)
        Protobuf.appendVarint(UInt64(string.utf8.count), to: &encodedSymbols)
        encodedSymbols.append(contentsOf: string.utf8)
        return i
    }

    /// The labels of the domain series: component, socket, die (multi-die parts only), source.
    static func domainLabels(_ domain: Domain, _ settings: SeriesSettings) -> [(String, String)] {
        domainIdentity(domain, settings.nameStyle) + [("source", settings.source)] + settings.extra
    }

    /// The labels that name a domain in every output (pushed and scraped): component, socket, and die
    /// on multi-die packages.
    static func domainIdentity(_ domain: Domain, _ style: NameStyle) -> [(String, String)] {
        var pairs = [("component", domain.component(style)), ("socket", String(domain.socket))]
        if let die = domain.die { pairs.append(("die", String(die))) }
        return pairs
    }
}

/// Protobuf wire-format helpers for the four messages of remote write 1.0 (`Protos/remote.proto`).
enum Protobuf {
    @inline(__always)
    static func varintSize(_ value: UInt64) -> Int {
        // 1 byte per 7 bits; 0 takes one byte.
        (63 - (value | 1).leadingZeroBitCount) / 7 + 1
    }

    static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: varintSize(value)))
        bytes.withUnsafeMutableBytes { _ = putVarint(value, $0.baseAddress!, start) }
    }

    /// Writes a varint at `offset`; returns the offset after it.
    @inline(__always)
    static func putVarint(_ value: UInt64, _ out: UnsafeMutableRawPointer, _ offset: Int) -> Int {
        var v = value
        var o = offset
        while v >= 0x80 {
            out.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: o, as: UInt8.self)
            v >>= 7
            o += 1
        }
        out.storeBytes(of: UInt8(v), toByteOffset: o, as: UInt8.self)
        return o + 1
    }

    /// A varint that fits in 8 bytes (< 2^56, e.g. any ms timestamp before the year 2^56 ms) as the
    /// little-endian 8-byte word to store, and its length; nil for larger values. Stored as one unaligned
    /// 8-byte write, which needs 8 writable bytes: the bytes past the varint are garbage, to be
    /// overwritten by what follows.
    @inline(__always)
    static func wideVarint(_ v: UInt64) -> (word: UInt64, size: Int)? {
        guard v < 1 << 56 else { return nil }
        // Spread the 7-bit groups one per byte, then set the continuation bit of all but the last byte.
        var x = v & 0x7F
        x |= (v & (0x7F << 7)) << 1
        x |= (v & (0x7F << 14)) << 2
        x |= (v & (0x7F << 21)) << 3
        x |= (v & (0x7F << 28)) << 4
        x |= (v & (0x7F << 35)) << 5
        x |= (v & (0x7F << 42)) << 6
        x |= (v & (0x7F << 49)) << 7
        let n = varintSize(v)
        let continuation: UInt64 = 0x8080_8080_8080_8080 & ((1 << UInt64(8 * (n - 1))) &- 1)
        return ((x | continuation).littleEndian, n)
    }

    /// The encoded size of `Sample { double value = 1; int64 timestamp = 2; }`. Like every protobuf
    /// encoder, zero fields are left out (0.0 by bit pattern, so −0.0 is kept).
    @inline(__always)
    static func sampleSize(_ s: PendingSample) -> Int {
        (s.value.bitPattern != 0 ? 9 : 0) + (s.timestamp != 0 ? 1 + varintSize(UInt64(bitPattern: s.timestamp)) : 0)
    }
}

/// Which remote-write message a request carries.
public enum RemoteWriteWire: String, Sendable, CaseIterable {
    /// `prometheus.WriteRequest` (remote write 1.0, the seed's).
    case v1 = "1.0"
    /// `io.prometheus.write.v2.Request` (remote write 2.0, as Prometheus 3.5 decodes it).
    case v2 = "2.0"
    /// OTLP/HTTP's `ExportMetricsServiceRequest`, uncompressed or gzip'd.
    case otlp
    case otlpGzip
}

/// Encodes remote-write requests straight into reused buffers: a protobuf `WriteRequest` with one
/// `TimeSeries` per series (in order of first appearance, each with its samples in the order given),
/// then snappy. No message objects and, once the buffers have grown to the largest request, no
/// allocation but the returned body. Byte-identical to serializing the generated swift-protobuf types
/// (`Tests/ExporterTests/EncodingTests.swift` checks that).
public struct RemoteWriteEncoder: Sendable {
    private var protobuf: [UInt8] = []
    private var compressed: [UInt8] = []
    /// Per series: encoded bytes of its samples in this request (0 until its first sample: a sample takes
    /// at least 2), write cursor.
    private var sizes: [Int] = []
    private var cursors: [Int] = []
    private var order: [Int] = []

    public init() {}

    /// The snappy-compressed request body, in remote write 1.0 (`prometheus.WriteRequest`) or 2.0
    /// (`io.prometheus.write.v2.Request`).
    public mutating func encode(_ samples: ArraySlice<PendingSample>, table: SeriesTable, wire: RemoteWriteWire = .v1) -> [UInt8] {
        let length = encodeProtobuf(samples, table: table, wire: wire)
        return protobuf.withUnsafeBytes { source in
            Snappy.compress(UnsafeRawBufferPointer(rebasing: source[..<length]), into: &compressed)
        }
    }

    /// The uncompressed message (for tests and the benchmark).
    public mutating func protobufBytes(_ samples: ArraySlice<PendingSample>, table: SeriesTable, wire: RemoteWriteWire = .v1) -> [UInt8] {
        let length = encodeProtobuf(samples, table: table, wire: wire)
        return Array(protobuf[..<length])
    }

    /// Encodes into `protobuf`; returns the encoded length. 1.0: `WriteRequest { repeated TimeSeries
    /// timeseries = 1 }`, each `{ labels = 1; samples = 2 }`. 2.0: `Request { symbols = 4; repeated
    /// TimeSeries timeseries = 5 }`, each `{ labels_refs = 1; samples = 2; metadata = 5 }`. The samples
    /// are encoded alike.
    private mutating func encodeProtobuf(_ samples: ArraySlice<PendingSample>, table: SeriesTable, wire: RemoteWriteWire) -> Int {
        precondition(wire == .v1 || wire == .v2, "OTLP requests are OTLPEncoder's")
        let v2 = wire == .v2
        let seriesTag: UInt8 = v2 ? 0x2A : 0x0A
        let heads = v2 ? table.encodedReferences : table.encodedLabels
        let requestHead = v2 ? table.encodedSymbols : []
        let tails = v2 ? table.encodedMetadata : []
        if sizes.count < table.count {
            let more = table.count - sizes.count
            sizes.append(contentsOf: repeatElement(0, count: more))
            cursors.append(contentsOf: repeatElement(0, count: more))
        }
        order.removeAll(keepingCapacity: true)
        return samples.withUnsafeBufferPointer { samples in
            // Pass 1: sizes per series (each index checked, then the per-series arrays are used unchecked).
            sizes.withUnsafeMutableBufferPointer { sizes in
                for s in samples {
                    precondition(s.series >= 0 && s.series < table.count, "sample for series \(s.series) of a \(table.count)-series table")
                    if sizes[s.series] == 0 { order.append(s.series) }
                    sizes[s.series] &+= 2 &+ Protobuf.sampleSize(s)  // tag 0x12 + one-byte length (a Sample is < 128 bytes)
                }
            }
            // Layout: each TimeSeries is its header, its labels, then its samples. First the cursors (where
            // each series' samples start), then the samples, then headers and labels: a sample's wide
            // stores may spill up to 8 bytes past it, onto bytes written later (or the slack at the end).
            var total = requestHead.count
            for series in order {
                let body = heads[series].count + sizes[series] + (v2 ? tails[series].count : 0)
                let header = 1 + Protobuf.varintSize(UInt64(body))
                cursors[series] = total + header + heads[series].count
                total += header + body
            }
            let slack = 16
            if protobuf.count < total + slack { protobuf.append(contentsOf: repeatElement(0, count: total + slack - protobuf.count)) }
            protobuf.withUnsafeMutableBytes { buffer in
                let out = buffer.baseAddress!
                // Each sample at its series' cursor: tag, length (filled in after the fields), fields.
                cursors.withUnsafeMutableBufferPointer { cursors in
                    // The samples of one window share a timestamp: its varint is spread once.
                    var lastTimestamp: Int64 = 0
                    var lastVarint: UInt64 = 0
                    var lastVarintSize = 0
                    for s in samples {
                        let start = cursors[s.series]
                        out.storeBytes(of: 0x12, toByteOffset: start, as: UInt8.self)
                        var o = start &+ 2
                        if s.value.bitPattern != 0 {
                            out.storeBytes(of: 0x09, toByteOffset: o, as: UInt8.self)
                            out.storeBytes(of: s.value.bitPattern.littleEndian, toByteOffset: o &+ 1, as: UInt64.self)
                            o &+= 9
                        }
                        if s.timestamp != 0 {
                            out.storeBytes(of: 0x10, toByteOffset: o, as: UInt8.self)
                            if s.timestamp == lastTimestamp {
                                out.storeBytes(of: lastVarint, toByteOffset: o &+ 1, as: UInt64.self)
                                o &+= 1 &+ lastVarintSize
                            } else if let (varint, size) = Protobuf.wideVarint(UInt64(bitPattern: s.timestamp)) {
                                out.storeBytes(of: varint, toByteOffset: o &+ 1, as: UInt64.self)
                                o &+= 1 &+ size
                                (lastTimestamp, lastVarint, lastVarintSize) = (s.timestamp, varint, size)
                            } else {
                                o = Protobuf.putVarint(UInt64(bitPattern: s.timestamp), out, o &+ 1)
                            }
                        }
                        out.storeBytes(of: UInt8(truncatingIfNeeded: o &- start &- 2), toByteOffset: start &+ 1, as: UInt8.self)
                        cursors[s.series] = o
                    }
                }
                // The request's head (2.0: the symbols), then each series' header and head bytes; a 2.0
                // series' metadata goes after its samples (field order, as every protobuf encoder writes).
                requestHead.withUnsafeBytes { if $0.count > 0 { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
                var offset = requestHead.count
                for series in order {
                    let head = heads[series]
                    let tail = v2 ? tails[series] : []
                    out.storeBytes(of: seriesTag, toByteOffset: offset, as: UInt8.self)
                    offset = Protobuf.putVarint(UInt64(head.count + sizes[series] + tail.count), out, offset + 1)
                    head.withUnsafeBytes { (out + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    offset += head.count + sizes[series]
                    tail.withUnsafeBytes { if $0.count > 0 { (out + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
                    offset += tail.count
                }
            }
            for series in order { sizes[series] = 0 }
            return total
        }
    }
}
