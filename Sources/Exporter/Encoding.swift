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

/// Label sets for every series the writer emits, built once: each is kept already encoded as the
/// `labels` fields of a remote-write `TimeSeries`, so a request only copies those bytes.
public struct SeriesTable: Sendable {
    /// The label pairs of each series, sorted by name (`__name__` first).
    public private(set) var labels: [[(name: String, value: String)]] = []
    /// `repeated Label labels = 1` of each series, wire-encoded.
    private(set) var encodedLabels: [[UInt8]] = []
    private var index: [[String]: Int] = [:]

    public init() {}

    public var count: Int { labels.count }

    /// The series index for this metric and labels (sorted by name, `__name__` included, no empty
    /// values — remote write 1.0), adding it on first use.
    public mutating func series(_ name: String, _ pairs: [(String, String)]) -> Int {
        var all = [("__name__", name)] + pairs.filter { !$0.1.isEmpty }
        all.sort { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
        let key = all.flatMap { [$0.0, $0.1] }
        if let i = index[key] { return i }
        labels.append(all.map { (name: $0.0, value: $0.1) })
        var bytes: [UInt8] = []
        for (name, value) in all {
            // Label { string name = 1; string value = 2; } as field 1 of TimeSeries.
            let n = name.utf8.count, v = value.utf8.count
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

    /// The labels of the domain series: component, socket, die (multi-die parts only), source.
    static func domainLabels(_ domain: Domain, _ settings: SeriesLabels) -> [(String, String)] {
        var pairs = [("component", domain.component(settings.nameStyle)), ("socket", String(domain.socket))]
        if let die = domain.die { pairs.append(("die", String(die))) }
        pairs.append(("source", settings.source))
        return pairs + settings.extra
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
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Writes a varint at `offset`; returns the offset after it.
    @inline(__always)
    static func putVarint(_ value: UInt64, _ out: UnsafeMutableRawPointer, _ offset: Int) -> Int {
        var v = value, o = offset
        while v >= 0x80 {
            out.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: o, as: UInt8.self)
            v >>= 7
            o += 1
        }
        out.storeBytes(of: UInt8(v), toByteOffset: o, as: UInt8.self)
        return o + 1
    }

    /// The encoded size of `Sample { double value = 1; int64 timestamp = 2; }`. Like every protobuf
    /// encoder, zero fields are left out (0.0 by bit pattern, so −0.0 is kept).
    @inline(__always)
    static func sampleSize(_ s: PendingSample) -> Int {
        (s.value.bitPattern != 0 ? 9 : 0) + (s.timestamp != 0 ? 1 + varintSize(UInt64(bitPattern: s.timestamp)) : 0)
    }
}

/// Encodes remote-write requests straight into reused buffers: a protobuf `WriteRequest` with one
/// `TimeSeries` per series (in order of first appearance, each with its samples in the order given),
/// then snappy. No message objects and, once the buffers have grown to the largest request, no
/// allocation but the returned body. Byte-identical to serializing the generated swift-protobuf types
/// (`Tests/ExporterTests/EncodingTests.swift` checks that).
public struct RemoteWriteEncoder: Sendable {
    private var protobuf: [UInt8] = []
    private var compressed: [UInt8] = []
    /// Per series: samples in this request, encoded bytes of its samples, write cursor.
    private var counts: [Int] = []
    private var sizes: [Int] = []
    private var cursors: [Int] = []
    private var order: [Int] = []

    public init() {}

    /// The snappy-compressed request body.
    public mutating func encode(_ samples: ArraySlice<PendingSample>, table: SeriesTable) -> [UInt8] {
        let length = encodeProtobuf(samples, table: table)
        return protobuf.withUnsafeBytes { source in
            Snappy.compress(UnsafeRawBufferPointer(rebasing: source[..<length]), into: &compressed)
        }
    }

    /// The uncompressed `WriteRequest` (for tests and the benchmark).
    public mutating func protobufBytes(_ samples: ArraySlice<PendingSample>, table: SeriesTable) -> [UInt8] {
        let length = encodeProtobuf(samples, table: table)
        return Array(protobuf[..<length])
    }

    /// Encodes into `protobuf`; returns the encoded length.
    private mutating func encodeProtobuf(_ samples: ArraySlice<PendingSample>, table: SeriesTable) -> Int {
        if counts.count < table.count {
            let more = table.count - counts.count
            counts.append(contentsOf: repeatElement(0, count: more))
            sizes.append(contentsOf: repeatElement(0, count: more))
            cursors.append(contentsOf: repeatElement(0, count: more))
        }
        for s in samples { precondition(s.series >= 0 && s.series < table.count, "sample for series \(s.series) of a \(table.count)-series table") }
        order.removeAll(keepingCapacity: true)
        // Pass 1: sizes per series (indices checked above, so the per-series arrays are used unchecked).
        counts.withUnsafeMutableBufferPointer { counts in
            sizes.withUnsafeMutableBufferPointer { sizes in
                for s in samples {
                    if counts[s.series] == 0 { order.append(s.series) }
                    counts[s.series] += 1
                    sizes[s.series] += 2 + Protobuf.sampleSize(s)  // tag 0x12 + one-byte length (a Sample is < 128 bytes)
                }
            }
        }
        // Layout: each TimeSeries is its header, its labels, then its samples; cursors point at the samples.
        var total = 0
        for series in order {
            let body = table.encodedLabels[series].count + sizes[series]
            total += 1 + Protobuf.varintSize(UInt64(body)) + body
        }
        if protobuf.count < total { protobuf.append(contentsOf: repeatElement(0, count: total - protobuf.count)) }
        protobuf.withUnsafeMutableBytes { buffer in
            let out = buffer.baseAddress!
            var offset = 0
            for series in order {
                let labels = table.encodedLabels[series]
                out.storeBytes(of: 0x0A, toByteOffset: offset, as: UInt8.self)
                offset = Protobuf.putVarint(UInt64(labels.count + sizes[series]), out, offset + 1)
                labels.withUnsafeBytes { (out + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                offset += labels.count
                cursors[series] = offset
                offset += sizes[series]
            }
            // Pass 2: each sample at its series' cursor.
            cursors.withUnsafeMutableBufferPointer { cursors in
                for s in samples {
                    var o = cursors[s.series]
                    out.storeBytes(of: 0x12, toByteOffset: o, as: UInt8.self)
                    out.storeBytes(of: UInt8(truncatingIfNeeded: Protobuf.sampleSize(s)), toByteOffset: o + 1, as: UInt8.self)
                    o += 2
                    if s.value.bitPattern != 0 {
                        out.storeBytes(of: 0x09, toByteOffset: o, as: UInt8.self)
                        out.storeBytes(of: s.value.bitPattern.littleEndian, toByteOffset: o + 1, as: UInt64.self)
                        o += 9
                    }
                    if s.timestamp != 0 {
                        out.storeBytes(of: 0x10, toByteOffset: o, as: UInt8.self)
                        o = Protobuf.putVarint(UInt64(bitPattern: s.timestamp), out, o + 1)
                    }
                    cursors[s.series] = o
                }
            }
        }
        for series in order {
            counts[series] = 0
            sizes[series] = 0
        }
        return total
    }
}
