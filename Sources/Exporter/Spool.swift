import Logging
import RAPLBackend
import Support
import SystemPackage

/// `--spool-dir` and `--spool-max-bytes`.
public struct SpoolSettings: Sendable, Equatable {
    public var directory: String
    public var maxBytes: Int

    public static let defaultMaxBytes = 256 << 20

    public init(directory: String, maxBytes: Int = SpoolSettings.defaultMaxBytes) {
        self.directory = directory
        self.maxBytes = maxBytes
    }

    /// Segments are closed past this size: small enough that delivered windows leave the disk soon
    /// and a replay holds one segment's windows in memory, large enough to be few files.
    var segmentBytes: Int { min(max(maxBytes / 16, 16 << 10), 1 << 20) }
}

/// Why the spool directory cannot be used at start (exit 2 with this line).
public struct SpoolUnusable: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// The last window the spool holds, with what it was measured with: where a restart continues from.
public struct SpoolAnchor: Sendable, Equatable {
    public var source: SpoolSource
    public var window: SpooledWindow
}

/// A write-ahead log of closed windows on disk, so that neither a long receiver outage nor a restart
/// loses them (docs/reliability.md#the-spool).
///
/// - Windows are appended, already encoded as records (``SpoolFormat``), once per push interval and
///   made durable (`fdatasync`) before any of them is sent: nothing reaches a receiver that a crash
///   could make the exporter forget.
/// - `acked` (a file beside the segments, replaced atomically) holds the sequence number up to which
///   every window was delivered; segments wholly before it are removed.
/// - A restart delivers what is after `acked` first (``backlog(after:before:maxWindows:)``), in order.
/// - Beyond `maxBytes` the oldest segments are removed and their undelivered windows counted.
/// - When writing fails (disk full, directory read-only or removed) the exporter keeps delivering
///   from memory; the failure is logged once per episode and shown in the self-metrics, and every
///   later flush tries again (a removed directory is made anew).
///
/// One process per directory: a `flock` on `DIR/lock`, taken at ``open(_:logger:)``.
///
/// Not thread-safe: the remote writer owns it once it runs.
public final class Spool {
    struct Segment {
        var name: String
        var firstSeq: UInt64?
        var lastSeq: UInt64?
        var windows: Int
        var bytes: Int
    }

    public struct Statistics: Sendable, Equatable {
        public var bytes = 0
        public var segments = 0
        /// Appends that failed (each flush that could not be made durable).
        public var writeErrors: UInt64 = 0
        /// Undelivered windows removed to stay within `maxBytes`.
        public var windowsDropped: UInt64 = 0
        /// Damaged records skipped when reading (torn writes, flipped bytes, foreign data).
        public var badRecords: UInt64 = 0
        /// Windows read back from disk and handed to delivery.
        public var windowsReplayed: UInt64 = 0
        /// Whether the last append was made durable.
        public var writable = true
    }

    public let settings: SpoolSettings
    private let logger: Logger
    private var lockDescriptor: CInt
    private var segments: [Segment] = []
    /// The segment being appended to, and its length.
    private var current: (fd: CInt, index: Int, length: Int)?
    public private(set) var acked: UInt64 = 0
    /// The sequence number the next window gets.
    public private(set) var nextSeq: UInt64
    public private(set) var anchor: SpoolAnchor?
    /// The counts; `bytes` and `segments` are derived from the segments when read (``statistics``).
    private var counts = Statistics()
    public var statistics: Statistics {
        var s = counts
        s.bytes = segments.reduce(0) { $0 + $1.bytes }
        s.segments = segments.count
        return s
    }
    /// Where a replay is in the segment it reads: the segment's bytes as last read, the offset after the
    /// last window handed out and the source in effect there (segments only grow: a longer file is read
    /// again and continued from the same offset). One segment's bytes, never its decoded windows.
    private var replayCursor: (name: String, bytes: [UInt8], offset: Int, source: SpoolSource?, lastSeq: UInt64)?
    private var failing = false
    private var dropLogged = false
    private var closed = false

    private var directory: String { settings.directory }
    private func path(_ name: String) -> String { directory + "/" + name }
    static func segmentName(_ seq: UInt64) -> String {
        let hex = String(seq, radix: 16)
        return "segment-" + String(repeating: "0", count: max(0, 16 - hex.count)) + hex + ".wal"
    }
    static func isSegmentName(_ name: String) -> Bool {
        name.hasPrefix("segment-") && name.hasSuffix(".wal") && name.utf8.count == 8 + 16 + 4
            && name.dropFirst(8).dropLast(4).allSatisfy { $0.isHexDigit }
    }

    /// Opens (creating) the directory, takes its lock, reads what it holds and starts a new segment —
    /// proving now that it is writable by this process.
    public static func open(_ settings: SpoolSettings, logger: Logger = Logger(label: "rapl-exporter.spool")) throws(SpoolUnusable) -> Spool {
        let dir = settings.directory
        func unusable(_ what: String, _ error: Errno) -> SpoolUnusable {
            SpoolUnusable(description: "spool directory \(dir) (--spool-dir, SPOOL_DIR): \(what): \(error)")
        }
        do throws(Errno) { try SpoolFiles.makeDirectory(dir) } catch { throw unusable("cannot create it", error) }
        let lock: CInt
        do throws(Errno) { lock = try SpoolFiles.openReadWrite(dir + "/lock", create: true) } catch {
            throw unusable("cannot open its lock file", error)
        }
        let locked: Bool
        // Retried for up to a second: a process being started elsewhere (between its fork and exec) or a
        // previous instance still exiting holds it only briefly; a running exporter holds it for good.
        do throws(Errno) { locked = try takeLock(lock, attempts: 100) } catch {
            SpoolFiles.close(lock)
            throw unusable("cannot lock it", error)
        }
        guard locked else {
            let holder = (try? SpoolFiles.read(dir + "/lock")).map { String(decoding: $0, as: UTF8.self).trimmingWhitespace() } ?? ""
            SpoolFiles.close(lock)
            throw SpoolUnusable(
                description:
                    "spool directory \(dir) (--spool-dir, SPOOL_DIR) is in use by another rapl-exporter\(holder.isEmpty ? "" : " (pid \(holder))"); give each process its own directory"
            )
        }
        do throws(Errno) { try writeHolder(lock) } catch {
            SpoolFiles.close(lock)
            throw unusable("cannot lock it", error)
        }
        let spool = Spool(settings: settings, lock: lock, logger: logger)
        spool.scan()
        do throws(Errno) { try spool.startSegment(firstSeq: spool.nextSeq) } catch {
            SpoolFiles.close(lock)
            throw unusable("cannot write a segment in it", error)
        }
        return spool
    }

    /// Takes the lock file's `flock`, tried `attempts` times 10 ms apart; false when another process holds it.
    private static func takeLock(_ fd: CInt, attempts: Int) throws(Errno) -> Bool {
        for attempt in 0..<attempts {
            if try SpoolFiles.tryLock(fd) { return true }
            if attempt < attempts - 1 { SpoolFiles.pause(milliseconds: 10) }
        }
        return false
    }

    /// Writes this process's pid into the lock file it holds (what a refused second process names).
    private static func writeHolder(_ fd: CInt) throws(Errno) {
        try SpoolFiles.truncate(fd, to: 0)
        try SpoolFiles.write(fd, Array("\(AtomicFile.processID)\n".utf8)[...], at: 0)
    }

    private init(settings: SpoolSettings, lock: CInt, logger: Logger) {
        self.settings = settings
        self.lockDescriptor = lock
        self.logger = logger
        self.nextSeq = 1
    }

    deinit { close() }

    /// Closes the segment and releases the lock: another process may open the directory from now on.
    /// Later appends fail (counted). Called when the writer ends; also by `deinit`.
    public func close() {
        guard !closed else { return }
        closed = true
        if let current { SpoolFiles.close(current.fd) }
        current = nil
        SpoolFiles.close(lockDescriptor)
    }

    // MARK: Start

    /// Reads the directory: the acknowledged sequence, every segment's range, the anchor; removes what is
    /// delivered; logs what it skips.
    private func scan() {
        if let text = try? SpoolFiles.read(path("acked")), let seq = UInt64(String(decoding: text, as: UTF8.self).trimmingWhitespace()) {
            acked = seq
        }
        let names: [String]
        do throws(Errno) { names = try SpoolFiles.list(directory).sorted() } catch {
            logger.error("cannot list the spool directory \(directory): \(error)")
            return
        }
        var lastSeq = acked
        var pending = 0
        for name in names {
            if name == "lock" || name == "acked" || name == "acked.tmp" { continue }
            guard Self.isSegmentName(name) else {
                logger.warning("spool directory \(directory): '\(name)' is not a spool file; left alone")
                continue
            }
            let bytes: [UInt8]
            do throws(Errno) { bytes = try SpoolFiles.read(path(name)) } catch {
                logger.error("spool segment \(name): cannot read it (\(error)); skipped")
                counts.badRecords += 1
                continue
            }
            guard let version = SpoolFormat.version(ofHeader: bytes[...]) else {
                if bytes.count <= SpoolFormat.headerLength, bytes.allSatisfy({ $0 == 0 }) || bytes.isEmpty {
                    // Made but never written (a crash right after creating it): nothing to keep.
                    try? SpoolFiles.remove(path(name))
                } else {
                    counts.badRecords += 1
                    logger.warning("spool segment \(name): not a spool segment (no header); left alone, not read")
                }
                continue
            }
            guard version == SpoolFormat.version else {
                counts.badRecords += 1
                logger.warning(
                    "spool segment \(name): written in spool format \(version), this exporter reads \(SpoolFormat.version); left for the version that wrote it, not read"
                )
                continue
            }
            // Walked, not decoded whole: only the range, the count and the last window are kept.
            var segment = Segment(name: name, windows: 0, bytes: bytes.count)
            var last: (SpoolSource, SpooledWindow)?
            let acked = acked
            let skipped = Self.walkWindows(bytes, from: SpoolFormat.headerLength, source: nil) { source, window, _ in
                if segment.firstSeq == nil { segment.firstSeq = window.seq }
                segment.lastSeq = window.seq
                segment.windows += 1
                if window.seq > acked { pending += 1 }
                last = (source, window)
                return true
            }
            if skipped > 0 {
                counts.badRecords += UInt64(skipped)
                logger.warning("spool segment \(name): \(skipped) damaged record(s) skipped (a torn write or corrupted bytes); the rest is delivered")
            }
            // Holding no window: nothing to keep.
            guard let (source, window) = last else {
                try? SpoolFiles.remove(path(name))
                continue
            }
            lastSeq = max(lastSeq, window.seq)
            anchor = SpoolAnchor(source: source, window: window)
            segments.append(segment)
        }
        // Delivered segments go, except the last one holding windows: it holds the anchor, which the next
        // start needs if this run is stopped before it makes a window durable.
        let anchorSegment = segments.lastIndex { $0.windows > 0 }
        for (i, segment) in segments.enumerated().reversed() where i != anchorSegment && segment.lastSeq.map({ $0 <= acked }) ?? true {
            try? SpoolFiles.remove(path(segment.name))
            segments.remove(at: i)
        }
        nextSeq = lastSeq + 1
        if pending > 0 {
            logger.notice("spool \(directory): \(pending) windows not yet delivered (after #\(acked)); they are sent first, in order")
        }
    }

    /// A segment's windows with their sources (`sources[i]` for `windows[i]`), decoded whole (tests).
    static func decode(_ bytes: [UInt8]) -> (windows: [SpooledWindow], sources: [SpoolSource], skipped: Int) {
        var windows: [SpooledWindow] = []
        var sources: [SpoolSource] = []
        let skipped = walkWindows(bytes, from: SpoolFormat.headerLength, source: nil) { source, window, _ in
            windows.append(window)
            sources.append(source)
            return true
        }
        return (windows, sources, skipped)
    }

    /// Walks a segment's window records from `offset` (with `source` in effect there), giving each good
    /// window with its source and the offset past it to `body` (false stops). A window without a
    /// preceding source, whose sizes do not match it, or whose sequence number does not increase is
    /// counted as damaged with the bad runs. Returns that count.
    @discardableResult
    static func walkWindows(
        _ bytes: [UInt8], from offset: Int, source start: SpoolSource?, lastSeq: UInt64 = 0, _ body: (SpoolSource, SpooledWindow, Int) -> Bool
    ) -> Int {
        guard offset <= bytes.count else { return 0 }
        var source = start
        var previous = lastSeq
        var bad = 0
        let (skipped, _) = SpoolFormat.walk(bytes[offset...]) { record, next in
            switch record {
            case .source(let s):
                source = s
                return true
            case .window(let w):
                guard let s = source, w.energy.count == s.domains.count, w.counterValues.count == s.counters.count, w.seq > previous else {
                    bad += 1
                    return true
                }
                previous = w.seq
                return body(s, w, next)
            }
        }
        return skipped + bad
    }

    /// A new segment, named after the first window it will hold, with its header, durable.
    private func startSegment(firstSeq: UInt64) throws(Errno) {
        try SpoolFiles.makeDirectory(directory)
        let name = Self.segmentName(firstSeq)
        if let existing = segments.firstIndex(where: { $0.name == name }) {
            // A segment of windows from `firstSeq` on cannot exist (it is past every window written);
            // one with this name holds nothing read.
            segments.remove(at: existing)
        }
        try? SpoolFiles.remove(path(name))
        let fd = try SpoolFiles.openReadWrite(path(name), create: true, exclusive: true)
        do throws(Errno) {
            let header = SpoolFormat.header()
            try SpoolFiles.write(fd, header[...], at: 0)
            try SpoolFiles.dataSync(fd)
            try SpoolFiles.syncDirectory(directory)
            segments.append(Segment(name: name, windows: 0, bytes: header.count))
            current = (fd, segments.count - 1, header.count)
        } catch {
            SpoolFiles.close(fd)
            try? SpoolFiles.remove(path(name))
            throw error
        }
    }

    // MARK: Writing

    /// Appends encoded records holding windows `firstSeq...lastSeq` and makes them durable. False when
    /// that failed: the windows are then only in memory (logged once per episode).
    @discardableResult
    public func append(_ records: [UInt8], firstSeq: UInt64, lastSeq: UInt64, windows: Int) -> Bool {
        guard !records.isEmpty else { return true }
        guard !closed else {
            counts.writeErrors += 1
            return false
        }
        nextSeq = max(nextSeq, lastSeq + 1)
        do throws(Errno) {
            if let c = current, !AtomicFile.isLinked(c.fd, at: path(segments[c.index].name)) {
                // Removed under us (a cleaner, an operator): writing on would only feed an unlinked file.
                SpoolFiles.close(c.fd)
                current = nil
                logger.error(
                    "spool \(directory): the segment being written was removed (the directory too?); starting anew — windows of the removed segment not yet delivered are lost if the exporter stops before delivering them"
                )
            }
            if current == nil {
                // After a failure, a roll or a removal: a new segment.
                try startSegment(firstSeq: firstSeq)
                try relockIfRemoved()
            }
            guard let (fd, index, length) = current else { return false }
            do throws(Errno) {
                try SpoolFiles.write(fd, records[...], at: length)
                try SpoolFiles.dataSync(fd)
            } catch {
                // Cut the partial write off; if even that fails, leave the segment (its torn tail is
                // skipped when read) and start another next time.
                do throws(Errno) { try SpoolFiles.truncate(fd, to: length) } catch {
                    SpoolFiles.close(fd)
                    current = nil
                }
                throw error
            }
            current = (fd, index, length + records.count)
            if segments[index].firstSeq == nil { segments[index].firstSeq = firstSeq }
            segments[index].lastSeq = lastSeq
            segments[index].windows += windows
            segments[index].bytes = length + records.count
            if failing {
                failing = false
                logger.notice("spool \(directory): writing again; windows are durable again")
            }
            counts.writable = true
            if length + records.count >= settings.segmentBytes {
                SpoolFiles.close(fd)
                current = nil
            }
            enforceLimit()
            return true
        } catch {
            counts.writeErrors += 1
            counts.writable = false
            if !failing {
                failing = true
                logger.error(
                    "spool \(directory): cannot write (\(error)); sampling and delivery go on from memory (MAX_RETRY_BATCHES × PUSH_INTERVAL_S of outage), spooling resumes when it can; logged once until then"
                )
            }
            return false
        }
    }

    /// A directory removed while running loses its lock file: take a new one, so that a second process
    /// started on the re-made directory refuses to start.
    private func relockIfRemoved() throws(Errno) {
        guard SpoolFiles.size(path("lock")) == nil else { return }
        let fd = try SpoolFiles.openReadWrite(path("lock"), create: true)
        guard try Self.takeLock(fd, attempts: 1) else {
            SpoolFiles.close(fd)
            throw Errno.resourceTemporarilyUnavailable
        }
        try? Self.writeHolder(fd)
        SpoolFiles.close(lockDescriptor)
        lockDescriptor = fd
    }

    /// Removes the oldest closed segments while the spool is over `maxBytes`, counting their undelivered
    /// windows (logged once per episode).
    private func enforceLimit() {
        var total = segments.reduce(0) { $0 + $1.bytes }
        var dropped = 0
        while total > settings.maxBytes, let oldest = segments.first, current.map({ $0.index != 0 }) ?? true {
            let undelivered = oldest.lastSeq.map { $0 > acked } ?? false ? oldest.windows : 0
            try? SpoolFiles.remove(path(oldest.name))
            segments.removeFirst()
            if let c = current { current = (c.fd, c.index - 1, c.length) }
            total -= oldest.bytes
            dropped += undelivered
            if let last = oldest.lastSeq, last > acked { acked = last }
        }
        guard dropped > 0 else { return }
        counts.windowsDropped += UInt64(dropped)
        if !dropLogged {
            dropLogged = true
            logger.error(
                "spool \(directory) is full (--spool-max-bytes \(settings.maxBytes)): removed the oldest \(dropped) undelivered windows; counted in rapl_exporter_spool_windows_dropped_total, logged once per episode"
            )
        }
    }

    // MARK: Delivery

    /// Every window up to `seq` is delivered (or was dropped and counted): remembered in `acked`, and
    /// segments wholly before it are removed.
    public func acknowledge(upTo seq: UInt64) {
        guard seq > acked else { return }
        acked = seq
        // Caught up: a later overflow is a new episode, logged again; the replay's bytes are not needed.
        if seq + 1 >= nextSeq {
            dropLogged = false
            replayCursor = nil
        }
        do throws(Errno) { try SpoolFiles.replace(path("acked"), with: Array("\(seq)\n".utf8)) } catch {
            // Not durable: a restart re-sends from the previous acknowledgement (the same samples again).
            if !failing {
                logger.warning("spool \(directory): cannot record the delivered position (\(error)); a restart may send some windows again")
            }
        }
        var i = 0
        // The last segment holding windows holds the anchor (see `scan`): it stays — unless writing fails
        // and the room is needed (a full disk: a restart then records a gap rather than losing windows).
        let anchorSegment = segments.last { $0.windows > 0 }?.name
        while i < segments.count {
            let isCurrent = current?.index == i
            let delivered = segments[i].lastSeq.map { $0 <= seq } ?? false
            if delivered, segments[i].name != anchorSegment || !counts.writable {
                if isCurrent, let c = current {
                    SpoolFiles.close(c.fd)
                    current = nil
                }
                try? SpoolFiles.remove(path(segments[i].name))
                if replayCursor?.name == segments[i].name { replayCursor = nil }
                segments.remove(at: i)
                if let c = current, c.index > i { current = (c.fd, c.index - 1, c.length) }
                continue
            }
            i += 1
        }
    }

    /// Up to `maxWindows` spooled windows with `after < seq < before`, in order, with their sources.
    public func backlog(after: UInt64, before: UInt64, maxWindows: Int) -> [(SpoolSource, SpooledWindow)] {
        var out: [(SpoolSource, SpooledWindow)] = []
        for segment in segments {
            guard out.count < maxWindows else { break }
            guard let first = segment.firstSeq, let last = segment.lastSeq, last > after, first < before else { continue }
            // Continue where the last call stopped when it stopped in this segment at or before `after`;
            // else from the segment's start.
            var cursor = replayCursor.flatMap { $0.name == segment.name && $0.lastSeq <= after ? $0 : nil }
            if cursor == nil || cursor!.bytes.count != segment.bytes {
                guard let bytes = try? SpoolFiles.read(path(segment.name)) else {
                    counts.badRecords += 1
                    logger.error("spool segment \(segment.name): cannot be read back; its windows are lost")
                    continue
                }
                cursor = cursor.map { ($0.name, bytes, $0.offset, $0.source, $0.lastSeq) } ?? (segment.name, bytes, SpoolFormat.headerLength, nil, 0)
            }
            guard var c = cursor else { continue }
            Self.walkWindows(c.bytes, from: c.offset, source: c.source, lastSeq: c.lastSeq) { source, window, next in
                guard window.seq < before else { return false }
                if window.seq > after { out.append((source, window)) }
                c.offset = next
                c.source = source
                c.lastSeq = window.seq
                return out.count < maxWindows
            }
            replayCursor = c
        }
        counts.windowsReplayed += UInt64(out.count)
        return out
    }
}
