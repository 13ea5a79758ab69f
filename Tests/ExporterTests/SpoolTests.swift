import Foundation
import Logging
import RAPLBackend
import Support
import TestSupport
import Testing

@testable import Exporter

/// Windows as the writer would record them: one source record, then windows `seqs` of two domains.
func spoolRecords(_ seqs: ClosedRange<UInt64>, source: SpoolSource = testSource) -> [UInt8] {
    var out: [UInt8] = []
    SpoolFormat.appendSource(source, to: &out)
    for seq in seqs { SpoolFormat.appendWindow(testWindow(seq), to: &out) }
    return out
}

let testDomains = [Domain(.package, socket: 0), Domain(.core, socket: 0)]
let testSource = SpoolSource(
    bootID: "boot-a", backend: "sysfs", domains: testDomains,
    counters: [
        SpooledCounter(source: "intel-rapl:0", domainIndex: 0, modulus: 262_143_328_851, unit: .microjoule),
        SpooledCounter(source: "intel-rapl:0:0", domainIndex: 1, modulus: 262_143_328_851, unit: .microjoule),
    ])

func testWindow(_ seq: UInt64) -> SpooledWindow {
    SpooledWindow(
        seq: seq, timestampMilliseconds: 1_800_000_000_000 + Int64(seq) * 100, bootMicroseconds: 5_000_000 + Int64(seq) * 100_000,
        energy: [seq * 10, seq % 7 == 0 ? nil : seq], totals: [seq * 100, seq * 50], counterValues: [1000 + seq * 10, 2000 + seq])
}

@Suite struct SpoolFormatTests {
    @Test func recordsRoundTrip() {
        let other = SpoolSource(
            bootID: "b", backend: "msr", domains: [Domain(.other("gpu"), socket: 1, die: 2), Domain(.psys, socket: 0)],
            counters: [SpooledCounter(source: "msr 0x611 cpu 8", domainIndex: 1, modulus: 1 << 32, unit: .joulesPowerOfTwo(14))])
        var bytes: [UInt8] = []
        SpoolFormat.appendSource(other, to: &bytes)
        let w = SpooledWindow(
            seq: 1 << 40, timestampMilliseconds: -5, bootMicroseconds: 1, energy: [nil, UInt64.max], totals: [0, 1], counterValues: [UInt64.max])
        SpoolFormat.appendWindow(w, to: &bytes)
        let (records, skipped, valid) = SpoolFormat.records(bytes[...])
        #expect(records == [.source(other), .window(w)])
        #expect(skipped == 0)
        #expect(valid == bytes.count)
    }

    @Test func crc32cIsTheCastagnoliChecksum() {
        // The standard check value of CRC-32C.
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    /// Every single flipped byte of a window record is caught: that record is skipped (or, for a flip in a
    /// marker, the record after resync), and the others read as written.
    @Test func aFlippedByteCostsOnlyItsRecord() {
        let bytes = spoolRecords(1...3)
        var source: [UInt8] = []
        SpoolFormat.appendSource(testSource, to: &source)
        var one: [UInt8] = []
        SpoolFormat.appendWindow(testWindow(1), to: &one)
        let secondStart = source.count + one.count
        for offset in secondStart..<(secondStart + one.count - 2) {
            var damaged = bytes
            damaged[offset] ^= 0x40
            let (windows, _, skipped) = Spool.decode(SpoolFormat.header() + damaged)
            #expect(windows.map(\.seq) == [1, 3], "flip at \(offset)")
            #expect(skipped == 1)
        }
    }
}

@Suite(.serialized) struct SpoolTests {
    let log = LogCapture()

    func open(_ dir: TempDirectory, maxBytes: Int = SpoolSettings.defaultMaxBytes) throws -> Spool {
        try Spool.open(SpoolSettings(directory: dir.spool, maxBytes: maxBytes), logger: log.logger)
    }

    /// A spool holding windows `seqs` in one segment, closed; that segment's path.
    func writtenSegment(_ dir: TempDirectory, _ seqs: ClosedRange<UInt64>) throws -> String {
        do {
            let spool = try open(dir)
            spool.append(spoolRecords(seqs), firstSeq: seqs.lowerBound, lastSeq: seqs.upperBound, windows: seqs.count)
        }
        return dir.spool + "/" + dir.segments()[0]
    }

    @Test func windowsSurviveAReopenAndAreReadBackInOrder() throws {
        let dir = TempDirectory()
        do {
            let spool = try open(dir)
            #expect(spool.nextSeq == 1)
            #expect(spool.append(spoolRecords(1...5), firstSeq: 1, lastSeq: 5, windows: 5))
            #expect(spool.append(spoolRecords(6...9), firstSeq: 6, lastSeq: 9, windows: 4))
            spool.acknowledge(upTo: 3)
        }
        let spool = try open(dir)
        #expect(spool.acked == 3)
        #expect(spool.nextSeq == 10)
        #expect(spool.anchor == SpoolAnchor(source: testSource, window: testWindow(9)))
        let backlog = spool.backlog(after: spool.acked, before: spool.nextSeq, maxWindows: 100)
        #expect(backlog.map(\.1) == (4...9).map(testWindow))
        #expect(spool.backlog(after: 3, before: 7, maxWindows: 2).map(\.1.seq) == [4, 5])
        #expect(log.contains("6 windows not yet delivered"))
    }

    @Test func deliveredSegmentsAreRemoved() throws {
        let dir = TempDirectory()
        // Small segments (16 KiB): each append closes one.
        let spool = try open(dir, maxBytes: 256 << 10)
        let big = 600
        var seq: UInt64 = 1
        for _ in 0..<4 {
            let records = spoolRecords(seq...(seq + UInt64(big) - 1))
            #expect(spool.append(records, firstSeq: seq, lastSeq: seq + UInt64(big) - 1, windows: big))
            seq += UInt64(big)
        }
        let before = dir.segments().count
        #expect(before >= 3)
        spool.acknowledge(upTo: seq - 1)
        // Only the last segment holding windows stays: it holds what a restart continues from.
        #expect(dir.segments().count == 1)
        #expect(spool.statistics.segments == 1)
    }

    @Test func overTheSizeLimitTheOldestWindowsGoAndAreCounted() throws {
        let dir = TempDirectory()
        let spool = try open(dir, maxBytes: 64 << 10)
        var seq: UInt64 = 1
        for _ in 0..<40 {
            #expect(spool.append(spoolRecords(seq...(seq + 99)), firstSeq: seq, lastSeq: seq + 99, windows: 100))
            seq += 100
        }
        let onDisk = dir.segments().reduce(0) { $0 + (SpoolFiles.size(dir.spool + "/" + $1) ?? 0) }
        #expect(onDisk <= 64 << 10)
        #expect(spool.statistics.windowsDropped > 0)
        #expect(log.count("is full") == 1)  // once per episode
        // What is left is the newest windows, in order, up to the last.
        let left = spool.backlog(after: spool.acked, before: seq, maxWindows: 10_000).map(\.1.seq)
        #expect(left.last == seq - 1)
        #expect(left == Array(left.first!...(seq - 1)))
        #expect(UInt64(left.count) + spool.statistics.windowsDropped == seq - 1)
    }

    @Test func aTornLastRecordIsSkippedAndTheRestDelivered() throws {
        let dir = TempDirectory()
        let segment = try writtenSegment(dir, 1...6)
        let size = SpoolFiles.size(segment)!
        #expect(truncate(segment, off_t(size - 5)) == 0)  // a crash in the middle of the last record
        let spool = try open(dir)
        #expect(spool.backlog(after: 0, before: 100, maxWindows: 100).map(\.1.seq) == [1, 2, 3, 4, 5])
        #expect(spool.statistics.badRecords == 1)
        #expect(spool.anchor?.window.seq == 5)
        #expect(log.contains("1 damaged record(s) skipped"))
    }

    @Test func aFlippedByteInTheMiddleOfASegmentCostsOneWindow() throws {
        let dir = TempDirectory()
        let segment = try writtenSegment(dir, 1...10)
        var bytes = try SpoolFiles.read(segment)
        bytes[bytes.count / 2] ^= 0xFF
        try SpoolFiles.replace(segment, with: bytes)
        let spool = try open(dir)
        let seqs = spool.backlog(after: 0, before: 100, maxWindows: 100).map(\.1.seq)
        #expect(seqs.count == 9)
        #expect(spool.statistics.badRecords == 1)
    }

    @Test func otherVersionsEmptyAndForeignFilesAreSkippedAndLeft() throws {
        let dir = TempDirectory()
        _ = try writtenSegment(dir, 1...3)
        let future = dir.spool + "/" + Spool.segmentName(100)
        try SpoolFiles.replace(future, with: SpoolFormat.header(version: 2) + spoolRecords(100...101))
        let empty = dir.spool + "/" + Spool.segmentName(200)
        try SpoolFiles.replace(empty, with: [])
        let foreign = dir.spool + "/notes.txt"
        try SpoolFiles.replace(foreign, with: Array("hello".utf8))
        let noHeader = dir.spool + "/" + Spool.segmentName(300)
        try SpoolFiles.replace(noHeader, with: Array("not a spool segment at all".utf8))

        let spool = try open(dir)
        #expect(spool.backlog(after: 0, before: 1000, maxWindows: 100).map(\.1.seq) == [1, 2, 3])
        #expect(log.contains("written in spool format 2"))
        #expect(log.contains("'notes.txt' is not a spool file; left alone"))
        #expect(log.contains("not a spool segment (no header)"))
        #expect(spool.statistics.badRecords == 2)
        #expect(SpoolFiles.size(future) != nil)  // left for the version that wrote it
        #expect(SpoolFiles.size(foreign) != nil)
        #expect(SpoolFiles.size(empty) == nil)  // held nothing
    }

    @Test func aSecondOpenOfTheSameDirectoryIsRefused() throws {
        let dir = TempDirectory()
        let first = try open(dir)
        #expect(throws: SpoolUnusable.self) { try open(dir) }
        do {
            _ = try open(dir)
        } catch {
            #expect("\(error)".contains("is in use by another rapl-exporter (pid \(getpid()))"))
        }
        _ = first
    }

    @Test func aDirectoryThatCannotBeMadeIsRefusedWithTheReason() throws {
        let dir = TempDirectory()
        try SpoolFiles.replace(dir.path + "/file", with: [1])
        do {
            _ = try Spool.open(SpoolSettings(directory: dir.path + "/file/spool"), logger: log.logger)
            Issue.record("opened a spool under a regular file")
        } catch {
            #expect("\(error)".contains("cannot create it"))
            #expect("\(error)".contains("--spool-dir, SPOOL_DIR"))
        }
    }

    /// Removed while running (a cleaner, an operator): the next append makes the directory, a segment and
    /// a lock anew; nothing before was lost that was not delivered.
    @Test func aRemovedDirectoryIsMadeAgain() throws {
        let dir = TempDirectory()
        let spool = try open(dir)
        #expect(spool.append(spoolRecords(1...2), firstSeq: 1, lastSeq: 2, windows: 2))
        try FileManager.default.removeItem(atPath: dir.spool)
        #expect(spool.append(spoolRecords(3...4), firstSeq: 3, lastSeq: 4, windows: 2))
        #expect(log.contains("the segment being written was removed"))
        #expect(dir.segments().count == 1)
        #expect(dir.files().contains("lock"))
        #expect(spool.backlog(after: 0, before: 100, maxWindows: 100).map(\.1.seq) == [3, 4])
        #expect(throws: SpoolUnusable.self) { try open(dir) }
    }
}

/// The spool on a small tmpfs: full, read-only, and back. Needs root (mount); CI runs as root.
@Suite(.serialized) struct SpoolFilesystemTests {
    let log = LogCapture()

    /// Runs `mount`/`umount`; throws when it fails.
    func run(_ tool: String, _ arguments: [String]) throws {
        if try Binary.runBlocking(tool, arguments, environment: [:]).status != 0 { throw CancellationError() }
    }

    @Test func aFullOrReadOnlyDiskStopsSpoolingOnceAndItResumes() throws {
        let dir = TempDirectory()
        let mountPoint = dir.path + "/fs"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        do { try run("/bin/mount", ["-t", "tmpfs", "-o", "size=96k", "tmpfs", mountPoint]) } catch {
            Issue.record("cannot mount a tmpfs here (the test needs root): the disk-full case is not tested")
            return
        }
        defer { try? run("/bin/umount", ["-l", mountPoint]) }
        let spool = try Spool.open(SpoolSettings(directory: mountPoint + "/spool", maxBytes: 64 << 20), logger: log.logger)
        var seq: UInt64 = 1
        var failures = 0
        for _ in 0..<60 {
            if !spool.append(spoolRecords(seq...(seq + 49)), firstSeq: seq, lastSeq: seq + 49, windows: 50) { failures += 1 }
            seq += 50
        }
        #expect(failures > 0)
        #expect(spool.statistics.writable == false)
        #expect(spool.statistics.writeErrors == UInt64(failures))
        #expect(log.count("cannot write") == 1)  // once per episode
        #expect(log.contains("No space left on device"))
        // Everything that was made durable reads back whole: no torn record was left by the failures.
        let durable = spool.backlog(after: 0, before: seq, maxWindows: 100_000)
        #expect(!durable.isEmpty)
        #expect(
            try Spool.decode(
                SpoolFiles.read(
                    mountPoint + "/spool/" + (try SpoolFiles.list(mountPoint + "/spool").filter { $0.hasPrefix("segment-") }.sorted().last!))
            ).skipped == 0)

        // Room again (what was delivered is removed): spooling resumes, said once.
        spool.acknowledge(upTo: seq - 1)
        #expect(spool.append(spoolRecords(seq...(seq + 9)), firstSeq: seq, lastSeq: seq + 9, windows: 10))
        #expect(spool.statistics.writable)
        #expect(log.count("writing again") == 1)
        seq += 10

    }

    /// Read-only (a bind mount made read-only over the directory, as an `errors=remount-ro` filesystem or
    /// a changed volume would be): the next segment cannot be made; said once; back when writable.
    @Test func aReadOnlyDirectoryStopsSpoolingOnceAndItResumes() throws {
        let dir = TempDirectory()
        // Small segments (16 KiB): each append of 600 windows closes its segment, so the next makes a file.
        let spool = try Spool.open(SpoolSettings(directory: dir.spool, maxBytes: 256 << 10), logger: log.logger)
        var seq: UInt64 = 1
        func append() -> Bool {
            defer { seq += 600 }
            return spool.append(spoolRecords(seq...(seq + 599)), firstSeq: seq, lastSeq: seq + 599, windows: 600)
        }
        #expect(append())
        do { try run("/bin/mount", ["--bind", dir.spool, dir.spool]) } catch {
            Issue.record("cannot bind-mount here (the test needs root): the read-only case is not tested")
            return
        }
        defer { try? run("/bin/umount", ["-l", dir.spool]) }
        try run("/bin/mount", ["-o", "remount,bind,ro", dir.spool])
        #expect(!append())
        #expect(!append())
        #expect(log.count("cannot write (Read-only file system)") == 1)
        #expect(spool.statistics.writable == false)
        try run("/bin/umount", [dir.spool])
        #expect(append())
        #expect(log.count("writing again") == 1)
        #expect(spool.statistics.writeErrors == 2)
        // The windows written before and after are all there, in order.
        let seqs = spool.backlog(after: 0, before: seq, maxWindows: 10_000).map(\.1.seq)
        #expect(seqs == Array(1...600) + Array(1801...2400))
    }
}
