import RAPLBackend

// The spool's on-disk format, version 1 (docs/reliability.md#spool-format). A segment file is a 16-byte
// header — the magic `RAPLWAL\n`, the format version (UInt32, little-endian) and four reserved bytes —
// then records. A record is framed as
//
//     marker 0xA5 0x5A | type (1 byte) | payload length (3 bytes LE) | CRC-32C of type, length, payload (4 bytes LE) | payload
//
// so that a reader that meets a bad record (a torn write, a flipped bit) skips to the next marker whose
// CRC checks. Payloads are LEB128 varints and length-prefixed UTF-8 strings. Two record types:
//
// - **source** (1): what the windows after it were measured with — the boot id, the backend, the domains
//   (the order of a window's per-domain values) and the raw counters (source, domain, modulus, unit).
//   Written at the start of every flush, so a damaged one costs at most one push interval of windows.
// - **window** (2): a window's sequence number, its timestamp (ms, as sent), CLOCK_BOOTTIME (µs) at its
//   end, per domain its energy (µJ; absent when unreadable or glitched) and the cumulative total (µJ)
//   after it, and every raw counter's value — what a restart needs to account for the energy used while
//   the exporter was down.
//
// What is stored is what was measured, not requests: labels, metric names and the protocol are applied
// when the windows are sent, so changing them between runs does not strand the spool.

/// One raw counter as the spool records it: enough to tell, after a restart, whether a new reading
/// continues the same counter.
public struct SpooledCounter: Sendable, Equatable {
    public var source: String
    /// Index into the source's domains.
    public var domainIndex: Int
    public var modulus: UInt128
    public var unit: EnergyUnit

    public init(source: String, domainIndex: Int, modulus: UInt128, unit: EnergyUnit) {
        self.source = source
        self.domainIndex = domainIndex
        self.modulus = modulus
        self.unit = unit
    }
}

/// A source record: what the windows after it were measured with.
public struct SpoolSource: Sendable, Equatable {
    public var bootID: String
    public var backend: String
    public var domains: [Domain]
    public var counters: [SpooledCounter]

    public init(bootID: String, backend: String, domains: [Domain], counters: [SpooledCounter]) {
        self.bootID = bootID
        self.backend = backend
        self.domains = domains
        self.counters = counters
    }
}

/// A window as the spool records it.
public struct SpooledWindow: Sendable, Equatable {
    public var seq: UInt64
    /// Milliseconds since the epoch: the timestamp its samples were (or will be) sent with.
    public var timestampMilliseconds: Int64
    /// CLOCK_BOOTTIME at the window's end, µs.
    public var bootMicroseconds: Int64
    /// µJ per domain of the source (nil: unreadable or glitched in this window).
    public var energy: [UInt64?]
    /// Cumulative µJ per domain after this window (the `rapl_energy_joules_total` value).
    public var totals: [UInt64]
    /// Raw value per counter of the source.
    public var counterValues: [UInt64]

    public init(
        seq: UInt64, timestampMilliseconds: Int64, bootMicroseconds: Int64, energy: [UInt64?], totals: [UInt64], counterValues: [UInt64]
    ) {
        self.seq = seq
        self.timestampMilliseconds = timestampMilliseconds
        self.bootMicroseconds = bootMicroseconds
        self.energy = energy
        self.totals = totals
        self.counterValues = counterValues
    }
}

/// Encoding and decoding of segments and records.
public enum SpoolFormat {
    public static let version: UInt32 = 1
    public static let magic: [UInt8] = Array("RAPLWAL\n".utf8)
    public static let headerLength = 16
    static let marker: (UInt8, UInt8) = (0xA5, 0x5A)
    static let frameLength = 10
    /// Payloads are at most 2^24 − 1 bytes (the length field); a source record of 10 000 counters fits.
    static let maxPayload = (1 << 24) - 1

    enum RecordType: UInt8 {
        case source = 1
        case window = 2
    }

    public static func header(version: UInt32 = version) -> [UInt8] {
        var bytes = magic
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: version >> (8 * UInt32(i)))) }
        bytes += [0, 0, 0, 0]
        return bytes
    }

    /// The version a segment's header declares; nil when it is not a spool segment.
    public static func version(ofHeader bytes: ArraySlice<UInt8>) -> UInt32? {
        guard bytes.count >= headerLength, bytes.prefix(magic.count).elementsEqual(magic) else { return nil }
        let b = bytes.startIndex + magic.count
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[b + $1]) << (8 * UInt32($1)) }
    }

    // MARK: Writing

    /// Appends one framed record.
    static func appendRecord(_ type: RecordType, to out: inout [UInt8], payload: (inout [UInt8]) -> Void) {
        let start = out.count
        out += [marker.0, marker.1, type.rawValue, 0, 0, 0, 0, 0, 0, 0]
        payload(&out)
        let length = out.count - start - frameLength
        precondition(length <= maxPayload, "spool record too large")
        out[start + 3] = UInt8(truncatingIfNeeded: length)
        out[start + 4] = UInt8(truncatingIfNeeded: length >> 8)
        out[start + 5] = UInt8(truncatingIfNeeded: length >> 16)
        var crc = CRC32C.update(0, out[(start + 2)..<(start + 6)])
        crc = CRC32C.update(crc, out[(start + frameLength)...])
        for i in 0..<4 { out[start + 6 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
    }

    public static func appendSource(_ source: SpoolSource, to out: inout [UInt8]) {
        appendRecord(.source, to: &out) { p in
            putString(source.bootID, &p)
            putString(source.backend, &p)
            putVarint(UInt64(source.domains.count), &p)
            for domain in source.domains { putDomain(domain, &p) }
            putVarint(UInt64(source.counters.count), &p)
            for counter in source.counters {
                putString(counter.source, &p)
                putVarint(UInt64(counter.domainIndex), &p)
                putUInt128(counter.modulus, &p)
                putUInt128(counter.unit.numerator, &p)
                putUInt128(counter.unit.denominator, &p)
            }
        }
    }

    /// Appends a window record; `energy`, `totals` and `counterValues` follow the current source.
    static func appendWindow(
        seq: UInt64, timestampMilliseconds: Int64, bootMicroseconds: Int64, energy: [UInt64?], totals: [UInt64], counterValues: [UInt64],
        to out: inout [UInt8]
    ) {
        appendRecord(.window, to: &out) { p in
            putVarint(seq, &p)
            putVarint(UInt64(bitPattern: timestampMilliseconds), &p)
            putVarint(UInt64(bitPattern: bootMicroseconds), &p)
            putVarint(UInt64(energy.count), &p)
            for i in energy.indices {
                if let e = energy[i] {
                    p.append(1)
                    putVarint(e, &p)
                } else {
                    p.append(0)
                }
                putVarint(totals[i], &p)
            }
            putVarint(UInt64(counterValues.count), &p)
            for v in counterValues { putVarint(v, &p) }
        }
    }

    public static func appendWindow(_ w: SpooledWindow, to out: inout [UInt8]) {
        appendWindow(
            seq: w.seq, timestampMilliseconds: w.timestampMilliseconds, bootMicroseconds: w.bootMicroseconds, energy: w.energy, totals: w.totals,
            counterValues: w.counterValues, to: &out)
    }

    static func putVarint(_ value: UInt64, _ out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func putUInt128(_ value: UInt128, _ out: inout [UInt8]) {
        putVarint(UInt64(truncatingIfNeeded: value), &out)
        putVarint(UInt64(truncatingIfNeeded: value >> 64), &out)
    }

    static func putString(_ s: String, _ out: inout [UInt8]) {
        putVarint(UInt64(s.utf8.count), &out)
        out += s.utf8
    }

    /// Kind code (0 package … 4 psys, 5 other with its name), socket, die + 1 (0: none).
    static func putDomain(_ d: Domain, _ out: inout [UInt8]) {
        switch d.kind {
        case .package: out.append(0)
        case .core: out.append(1)
        case .uncore: out.append(2)
        case .dram: out.append(3)
        case .psys: out.append(4)
        case .other(let name):
            out.append(5)
            putString(name, &out)
        }
        putVarint(UInt64(d.socket), &out)
        putVarint(d.die.map { UInt64($0) + 1 } ?? 0, &out)
    }

    // MARK: Reading

    /// What a segment's records read as.
    public enum Record: Equatable {
        case source(SpoolSource)
        case window(SpooledWindow)
    }

    /// The records of a segment's body (after the header), in order. A record whose frame or CRC is bad
    /// is skipped up to the next marker that starts a good record; `skipped` counts them (a run of bad
    /// bytes counts once). `validLength` is where the last good record ends (for truncating a torn tail).
    public static func records(_ bytes: ArraySlice<UInt8>) -> (records: [Record], skipped: Int, validLength: Int) {
        var records: [Record] = []
        let (skipped, validEnd) = walk(bytes) { record, _ in
            records.append(record)
            return true
        }
        return (records, skipped, validEnd - bytes.startIndex)
    }

    /// Reads the records from `bytes.startIndex` on, one at a time, without keeping them: `body` gets each
    /// good record and the index just past it, and returns false to stop there. Bad records are skipped as
    /// in ``records(_:)``. Returns the bad runs met and where the last good record ends.
    @discardableResult
    static func walk(_ bytes: ArraySlice<UInt8>, _ body: (Record, Int) -> Bool) -> (skipped: Int, validEnd: Int) {
        var skipped = 0
        var i = bytes.startIndex
        var validEnd = bytes.startIndex
        var inBadRun = false
        while i < bytes.endIndex {
            if let (record, next) = record(at: i, in: bytes) {
                i = next
                validEnd = next
                inBadRun = false
                if let record, !body(record, next) { break }
                continue
            }
            if !inBadRun {
                skipped += 1
                inBadRun = true
            }
            // Resynchronise at the next marker.
            i += 1
            while i + 1 < bytes.endIndex, !(bytes[i] == marker.0 && bytes[i + 1] == marker.1) { i += 1 }
            if i + 1 >= bytes.endIndex { break }
        }
        return (skipped, validEnd)
    }

    /// The record framed at `i` and where the next starts; nil when no good frame starts there. A good
    /// frame of an unknown type reads as (nil, next): a later version's record, skipped.
    private static func record(at i: Int, in bytes: ArraySlice<UInt8>) -> (Record?, Int)? {
        guard i + frameLength <= bytes.endIndex, bytes[i] == marker.0, bytes[i + 1] == marker.1 else { return nil }
        let length = Int(bytes[i + 3]) | Int(bytes[i + 4]) << 8 | Int(bytes[i + 5]) << 16
        let end = i + frameLength + length
        guard end <= bytes.endIndex else { return nil }
        let stored = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[i + 6 + $1]) << (8 * UInt32($1)) }
        var crc = CRC32C.update(0, bytes[(i + 2)..<(i + 6)])
        crc = CRC32C.update(crc, bytes[(i + frameLength)..<end])
        guard crc == stored else { return nil }
        var reader = Reader(bytes: bytes[(i + frameLength)..<end])
        switch RecordType(rawValue: bytes[i + 2]) {
        case .source?:
            guard let s = reader.source() else { return nil }
            return (.source(s), end)
        case .window?:
            guard let w = reader.window() else { return nil }
            return (.window(w), end)
        case nil:
            return (nil, end)
        }
    }

    struct Reader {
        var bytes: ArraySlice<UInt8>

        mutating func varint() -> UInt64? {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while let b = bytes.first {
                bytes = bytes.dropFirst()
                guard shift < 64 else { return nil }
                result |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return result }
                shift += 7
            }
            return nil
        }

        mutating func int(max: Int = 1 << 24) -> Int? {
            guard let v = varint(), v <= UInt64(max) else { return nil }
            return Int(v)
        }

        mutating func uint128() -> UInt128? {
            guard let lo = varint(), let hi = varint() else { return nil }
            return UInt128(hi) << 64 | UInt128(lo)
        }

        mutating func string() -> String? {
            guard let n = int(max: 4096), bytes.count >= n else { return nil }
            let s = String(decoding: bytes.prefix(n), as: UTF8.self)
            bytes = bytes.dropFirst(n)
            return s
        }

        mutating func byte() -> UInt8? {
            guard let b = bytes.first else { return nil }
            bytes = bytes.dropFirst()
            return b
        }

        mutating func domain() -> Domain? {
            guard let code = byte() else { return nil }
            let kind: DomainKind
            switch code {
            case 0: kind = .package
            case 1: kind = .core
            case 2: kind = .uncore
            case 3: kind = .dram
            case 4: kind = .psys
            case 5:
                guard let name = string() else { return nil }
                kind = .other(name)
            default: return nil
            }
            guard let socket = int(), let die = int() else { return nil }
            return Domain(kind, socket: socket, die: die == 0 ? nil : die - 1)
        }

        mutating func source() -> SpoolSource? {
            guard let boot = string(), let backend = string(), let nd = int() else { return nil }
            var domains: [Domain] = []
            for _ in 0..<nd {
                guard let d = domain() else { return nil }
                domains.append(d)
            }
            guard let nc = int() else { return nil }
            var counters: [SpooledCounter] = []
            for _ in 0..<nc {
                guard let source = string(), let di = int(), di < nd, let modulus = uint128(), let num = uint128(), let den = uint128(),
                    let unit = EnergyUnit(numerator: num, denominator: den)
                else { return nil }
                counters.append(SpooledCounter(source: source, domainIndex: di, modulus: modulus, unit: unit))
            }
            guard bytes.isEmpty else { return nil }
            return SpoolSource(bootID: boot, backend: backend, domains: domains, counters: counters)
        }

        mutating func window() -> SpooledWindow? {
            guard let seq = varint(), let ts = varint(), let boot = varint(), let nd = int() else { return nil }
            var energy: [UInt64?] = []
            var totals: [UInt64] = []
            for _ in 0..<nd {
                guard let present = byte(), present <= 1 else { return nil }
                var e: UInt64?
                if present == 1 {
                    guard let v = varint() else { return nil }
                    e = v
                }
                guard let total = varint() else { return nil }
                energy.append(e)
                totals.append(total)
            }
            guard let nc = int() else { return nil }
            var values: [UInt64] = []
            for _ in 0..<nc {
                guard let v = varint() else { return nil }
                values.append(v)
            }
            guard bytes.isEmpty else { return nil }
            return SpooledWindow(
                seq: seq, timestampMilliseconds: Int64(bitPattern: ts), bootMicroseconds: Int64(bitPattern: boot), energy: energy, totals: totals,
                counterValues: values)
        }
    }
}

/// CRC-32C (Castagnoli), the checksum of spool records: table-driven, no C.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func update(_ crc: UInt32, _ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 { update(0, bytes[...]) }
}
