/// A decoder of the remote write 2.0 messages rapl-exporter sends (`io.prometheus.write.v2.Request`),
/// for tests that look at what was sent: the series with their labels resolved through the symbols,
/// samples, and metadata. Independent of the exporter's encoder (it reads the wire format field by field).
public struct RemoteWrite2Request: Sendable {
    public struct Series: Sendable {
        public var labels: [String: String]
        public var samples: [(value: Double, timestamp: Int64)]
        public var type: Int
        public var help: String
        public var unit: String
    }

    public var symbols: [String] = []
    public var series: [Series] = []

    /// Nil when `bytes` is not such a message.
    public init?(_ bytes: [UInt8]) {
        var reader = WireReader(bytes[...])
        var raw: [ArraySlice<UInt8>] = []
        while !reader.atEnd {
            guard let (field, wire) = reader.key() else { return nil }
            switch (field, wire) {
            case (4, 2):
                guard let s = reader.bytes() else { return nil }
                symbols.append(String(decoding: s, as: UTF8.self))
            case (5, 2):
                guard let s = reader.bytes() else { return nil }
                raw.append(s)
            default: guard reader.skip(wire) else { return nil }
            }
        }
        for bytes in raw {
            var r = WireReader(bytes)
            var refs: [Int] = []
            var samples: [(Double, Int64)] = []
            var type = 0
            var help = 0
            var unit = 0
            while !r.atEnd {
                guard let (field, wire) = r.key() else { return nil }
                switch (field, wire) {
                case (1, 2):
                    guard let packed = r.bytes() else { return nil }
                    var p = WireReader(packed)
                    while !p.atEnd {
                        guard let v = p.varint() else { return nil }
                        refs.append(Int(v))
                    }
                case (2, 2):
                    guard let sample = r.bytes() else { return nil }
                    var s = WireReader(sample)
                    var value = 0.0
                    var timestamp: Int64 = 0
                    while !s.atEnd {
                        guard let (f, w) = s.key() else { return nil }
                        if f == 1, w == 1, let bits = s.fixed64() {
                            value = Double(bitPattern: bits)
                        } else if f == 2, w == 0, let t = s.varint() {
                            timestamp = Int64(bitPattern: t)
                        } else if !s.skip(w) {
                            return nil
                        }
                    }
                    samples.append((value, timestamp))
                case (5, 2):
                    guard let meta = r.bytes() else { return nil }
                    var m = WireReader(meta)
                    while !m.atEnd {
                        guard let (f, w) = m.key(), w == 0, let v = m.varint() else { return nil }
                        switch f {
                        case 1: type = Int(v)
                        case 3: help = Int(v)
                        case 4: unit = Int(v)
                        default: break
                        }
                    }
                default: guard r.skip(wire) else { return nil }
                }
            }
            guard refs.count % 2 == 0, (refs + [help, unit]).allSatisfy({ $0 < symbols.count }) else { return nil }
            var labels: [String: String] = [:]
            for i in stride(from: 0, to: refs.count, by: 2) { labels[symbols[refs[i]]] = symbols[refs[i + 1]] }
            series.append(Series(labels: labels, samples: samples, type: type, help: symbols[help], unit: symbols[unit]))
        }
    }

    /// The (timestamp, value) samples of the series whose labels include `match`.
    public func samples(_ match: [String: String]) -> [(Int64, Double)] {
        series.filter { s in match.allSatisfy { s.labels[$0.key] == $0.value } }.flatMap { $0.samples.map { ($0.timestamp, $0.value) } }
    }
}

private struct WireReader {
    var rest: ArraySlice<UInt8>
    init(_ bytes: ArraySlice<UInt8>) { rest = bytes }
    var atEnd: Bool { rest.isEmpty }

    mutating func varint() -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = rest.first, shift < 64 {
            rest = rest.dropFirst()
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
        return nil
    }

    mutating func key() -> (Int, Int)? { varint().map { (Int($0 >> 3), Int($0 & 7)) } }

    mutating func bytes() -> ArraySlice<UInt8>? {
        guard let n = varint(), n <= UInt64(rest.count) else { return nil }
        defer { rest = rest.dropFirst(Int(n)) }
        return rest.prefix(Int(n))
    }

    mutating func fixed64() -> UInt64? {
        guard rest.count >= 8 else { return nil }
        defer { rest = rest.dropFirst(8) }
        return rest.prefix(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func skip(_ wire: Int) -> Bool {
        switch wire {
        case 0: return varint() != nil
        case 1: return fixed64() != nil
        case 2: return bytes() != nil
        case 5:
            guard rest.count >= 4 else { return false }
            rest = rest.dropFirst(4)
            return true
        default: return false
        }
    }
}
